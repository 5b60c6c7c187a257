"""Is the file at a store's path a sound gdig store?  Checked before gdig writes a byte into it.

DuckDB checksums every block but reads a block only when a query needs it, so a damaged store
otherwise opens fine and fails mid-run with a raw `duckdb.Error`, or a foreign file gets gdig's
tables written into it.  Here: the file's header is checked before DuckDB opens it; a DuckDB
error on open is sorted into damaged / foreign / held by another process; and every column of
every table is read once (which verifies each block's checksum) unless the file is exactly as
gdig last closed it (size, mtime, inode in `<db>.verified`, written on close by a writer).
A file changed behind gdig's back (truncated, bit-flipped, replaced, or left by a killed run)
is therefore scanned on its next open; the scan costs about a second per GB.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from gdig.errors import StoreDamaged, StoreError

_MAGIC = b"DUCK"  # bytes 8..12 of a DuckDB file (after the header block's checksum)
_DAMAGE = ("corrupt", "checksum", "could not read enough bytes", "not a valid duckdb", "failed to download extension",
           "serializ", "invalid", "replaying wal", "unsupported")
_LOCK = ("could not set lock", "conflicting lock")


def _what_to_do(path: Path) -> str:
    return (f"restore it from a backup, or move it aside (mv {path} {path}.damaged) and run `gdig ingest` / "
            f"`gdig select` again to rebuild it")


def damaged(path: Path, what: str) -> StoreDamaged:
    return StoreDamaged(f"{path}: {what}; gdig will not write into it: {_what_to_do(path)}")


def check_header(path: Path) -> None:
    """Refuse a file that cannot be a DuckDB database before DuckDB sees it (DuckDB would try to
    download a reader extension for a SQLite file, or call an empty file 'not valid')."""
    if not path.exists():
        return
    if not path.is_file():
        raise StoreError(f"{path}: not a file; give --db / workspace.db a file path")
    size = path.stat().st_size
    if size == 0:
        raise damaged(path, "the store file is empty (0 bytes: truncated, or not a store)")
    with open(path, "rb") as fh:
        head = fh.read(16)
    if head[8:12] != _MAGIC:
        raise damaged(path, f"not a DuckDB database (it starts with {head[:16]!r}): a damaged store or "
                            f"another program's file")


def on_open_error(path: Path, err: Exception) -> StoreError:
    """The one-line error for a DuckDB error raised while opening or verifying `path`."""
    text = str(err)
    low = text.lower()
    if any(k in low for k in _LOCK):
        from gdig.runlock import holder

        by = holder(path)
        who = f"a gdig run holds it ({by}); run again when it has finished" if by else \
            f"another process holds it ({first_line(text)})"
        return StoreError(f"{path}: cannot open the store: {who}")
    if any(k in low for k in _DAMAGE):
        named = re.search(r'"([^"]+\.wal)"', text)  # a damaged write-ahead log names itself
        where = f" (its write-ahead log {named.group(1)})" if named else ""
        return damaged(path, f"the store is damaged{where}: {first_line(text)}")
    return StoreError(f"{path}: cannot open the store: {first_line(text)}")


def is_damage(err: BaseException) -> bool:
    """A DuckDB error that says the file is damaged (a checksum or short read met mid-run)."""
    import duckdb

    return isinstance(err, duckdb.Error) and any(k in str(err).lower() for k in _DAMAGE[:3])


def first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "no message"


# -- the full scan and the record of a clean close ---------------------------------------------------

def _marker(path: Path) -> Path:
    return Path(f"{path}.verified")


def _stat(path: Path) -> dict:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}


def unchanged_since_close(path: Path) -> bool:
    """Is the file exactly as a gdig writer last closed it (no WAL left, same size/mtime/inode)?"""
    if Path(f"{path}.wal").exists():
        return False
    try:
        return json.loads(_marker(path).read_text(encoding="utf-8")) == _stat(path)
    except (OSError, ValueError):
        return False


def record_close(path: Path) -> None:
    """After a writer closed the store: remember the file as it is (tmp + rename: never half)."""
    marker = _marker(path)
    tmp = marker.with_name(marker.name + ".tmp")
    try:
        tmp.write_text(json.dumps(_stat(path)), encoding="utf-8")
        os.replace(tmp, marker)
    except OSError:  # a read-only directory: the next open scans instead
        tmp.unlink(missing_ok=True)


def forget_close(path: Path) -> None:
    """Before writing: the record no longer holds (a run killed while writing leaves no stale one)."""
    try:
        _marker(path).unlink(missing_ok=True)
    except OSError:
        pass


def scan(con, path: Path) -> None:
    """Read every column of every table (each block's checksum is verified on read)."""
    tables = [r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
        "AND table_type = 'BASE TABLE' ORDER BY table_name").fetchall()]
    for table in tables:
        con.execute(f'SELECT count(*), sum(hash(COLUMNS(*))) FROM "{table}"').fetchall()


def foreign_tables(con) -> list[str]:
    """The tables of a DuckDB database that has no gdig schema (empty: a fresh file)."""
    return [r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' ORDER BY 1").fetchall()]
