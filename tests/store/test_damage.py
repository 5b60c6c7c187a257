"""A damaged or foreign store file: one line naming the file and what to do (exit 2), and gdig
writes nothing into it; a sound store closed by gdig is not scanned again on its next open."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import duckdb
import pytest
import yaml
from typer.testing import CliRunner

from gdig.cli import app
from gdig.errors import BadInput, StoreDamaged
from gdig.store import Store, integrity

MARK = "Zq7-unmistakable-source-marker"


def _good(path: Path) -> Path:
    """A gdig store with some rows (several data blocks)."""
    with Store(path) as s:
        s.store_id()
        s.con.execute("INSERT INTO examples SELECT 'id' || range, 'xa', 'xb', "
                      f"'{MARK}' || range, 'target ' || range FROM range(60000)")
    return path


def _blocks_with_data(raw: bytes) -> int:
    """An offset inside the examples' rows: the last place the marker's prefix is stored."""
    pos = raw.rfind(MARK[:8].encode())
    assert pos > 12288, "the marker is not stored verbatim; pick another damage offset"
    return pos


def _flip(raw: bytes) -> bytes:
    b = bytearray(raw)
    b[_blocks_with_data(raw)] ^= 0x40
    return bytes(b)


def _foreign_duckdb(path: Path) -> None:
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE accounts (id INTEGER, owner VARCHAR)")
    con.close()


CASES = {
    "truncated to half": (lambda raw: raw[: len(raw) // 2], "the store is damaged: IO Error: Could not read enough bytes"),
    "truncated to 100 bytes": (lambda raw: raw[:100], "the store is damaged: IO Error: Could not read enough bytes"),
    "truncated to nothing": (lambda raw: b"", "the store file is empty (0 bytes: truncated, or not a store)"),
    "a bit flipped in a row block": (_flip, "the store is damaged: Corrupt database file: computed checksum"),
    "a bit flipped in the header": (lambda raw: raw[:100] + bytes([raw[100] ^ 1]) + raw[101:],
                                    "the store is damaged: Corrupt database file: computed checksum"),
    "junk text": (lambda raw: b"hello, not a database\n" * 50, "not a DuckDB database (it starts with b'hello, not a dat')"),
    "a SQLite file": (lambda raw: b"SQLite format 3\x00" + bytes(4080), "not a DuckDB database (it starts with b'SQLite format 3\\x00')"),
}


def _damaged(tmp_path: Path, case: str) -> Path:
    path = _good(tmp_path / "ws.duckdb")
    make, _ = CASES[case]
    path.write_bytes(make(path.read_bytes()))
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("read_only", [False, True])
def test_a_damaged_store_is_one_line_naming_the_file_and_left_untouched(case, read_only, tmp_path):
    path = _damaged(tmp_path, case)
    before = _sha(path)
    with pytest.raises(StoreDamaged) as err:
        Store(path, read_only=read_only)
    msg = str(err.value)
    assert "\n" not in msg and isinstance(err.value, BadInput)
    assert msg.startswith(f"{path}: {CASES[case][1]}"), msg
    assert msg.endswith(f"gdig will not write into it: restore it from a backup, or move it aside "
                        f"(mv {path} {path}.damaged) and run `gdig ingest` / `gdig select` again to rebuild it")
    assert _sha(path) == before
    assert not Path(f"{path}.wal").exists() and not integrity.unchanged_since_close(path)


def test_a_foreign_duckdb_database_gets_no_gdig_tables(tmp_path):
    path = tmp_path / "theirs.duckdb"
    _foreign_duckdb(path)
    before = _sha(path)
    with pytest.raises(StoreDamaged, match=r"theirs.duckdb: a DuckDB database but not a gdig store \(tables: accounts\); "
                                           r"gdig will not write into it"):
        Store(path)
    assert _sha(path) == before


def test_an_empty_duckdb_file_becomes_a_store(tmp_path):
    """What a run killed before its first schema commit leaves: a DuckDB file with no tables."""
    path = tmp_path / "ws.duckdb"
    duckdb.connect(str(path)).close()
    with Store(path) as s:
        assert s.count("examples") == 0


def _cli_calls(path: Path, tmp_path: Path) -> dict[str, list[str]]:
    data = tmp_path / "pool.jsonl"
    data.write_text(json.dumps({"src": "a", "tgt": "b"}) + "\n", encoding="utf-8")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "workspace": {"db": str(path), "dir": str(tmp_path / "artifacts")}, "languages": {"src": "de", "tgt": "en"},
        "data": {"candidates": [{"path": str(data)}], "seed": [{"path": str(data)}]},
        "model": {"name_or_path": str(tmp_path / "no-model")}}), encoding="utf-8")
    return {
        "ingest": ["ingest", str(data), "--db", str(path), "--role", "candidates", "--name", "pool",
                   "--src-lang", "de", "--tgt-lang", "en", "--no-progress"],
        "report": ["report", "--db", str(path), "--out", str(tmp_path / "report")],
        "explain": ["explain", "someid", "--db", str(path)],
        "select": ["select", str(config), "--no-prefect", "--no-progress"],
    }


@pytest.mark.parametrize("command", ["ingest", "report", "explain", "select"])
@pytest.mark.parametrize("case", ["a bit flipped in a row block", "junk text"])
def test_every_command_on_a_damaged_store_exits_2_with_one_line(command, case, tmp_path):
    path = _damaged(tmp_path, case)
    before = _sha(path)
    res = CliRunner().invoke(app, _cli_calls(path, tmp_path)[command])
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: "), res.stderr
    assert "move it aside" in lines[0]
    assert _sha(path) == before


def test_a_store_closed_by_gdig_is_not_scanned_again(tmp_path, monkeypatch):
    path = _good(tmp_path / "ws.duckdb")
    assert integrity.unchanged_since_close(path)
    scans = []
    monkeypatch.setattr(integrity, "scan", lambda con, p: scans.append(p))
    with Store(path, read_only=True):
        pass
    with Store(path) as s:
        s.count("examples")
    assert scans == []
    os.utime(path, ns=(0, 0))  # touched behind gdig's back: scanned on the next open
    with Store(path, read_only=True):
        pass
    assert scans == [path]


def test_damage_met_mid_run_is_the_same_line(tmp_path):
    """Rot that keeps the file's size and mtime passes the open; the bad block is met by a query."""
    path = _good(tmp_path / "ws.duckdb")
    st = path.stat()
    path.write_bytes(_flip(path.read_bytes()))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert integrity.unchanged_since_close(path)
    with pytest.raises(StoreDamaged, match=rf"^{path}: the store is damaged: .*Corrupt database file"):
        with Store(path, read_only=True) as s:
            s.table("examples")
