"""From a path (file, Moses prefix, directory, ``hf:<name>``) and a format to a Source:
the format from the argument, the path, the extension or else the content."""

from __future__ import annotations

import os
from pathlib import Path

from gdig.data import validate as V
from gdig.data.readers.common import ReadError, Source
from gdig.data.readers.formats import FORMATS, JSON_FORMATS, SCHEMAS, by_content, by_suffix
from gdig.data.readers.moses import moses_candidate, moses_files


def open_source(
    path: str | os.PathLike,
    fmt: str = "auto",
    *,
    split: str | None = None,
    limit: int | None = None,
    src_lang: str | None = None,
    tgt_lang: str | None = None,
) -> Source:
    """Resolve a path (file, Moses prefix, directory, ``hf:<name>``) and its format."""
    if fmt not in FORMATS:
        raise ReadError(f"{path}: unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    spath = str(path)
    schema = fmt if fmt in SCHEMAS else None
    if fmt == "hub" or (fmt == "auto" and spath.startswith("hf:")):
        name = spath[3:] if spath.startswith("hf:") else spath
        name, _, config = name.partition(":")
        return Source(spath, "hub", split=split, limit=limit, hub_name=name, hub_config=config or None)
    p = Path(spath)
    if fmt == "moses" or (fmt == "auto" and moses_candidate(p)):
        return Source(spath, "moses", files=moses_files(p, src_lang, tgt_lang), limit=limit)
    if not p.exists():
        raise ReadError(f"{p}: no such file or directory")
    if p.is_dir():
        if fmt not in ("auto", "disk", *SCHEMAS):
            raise ReadError(f"{p}: is a directory, not a {fmt} file")
        if not any((p / f).exists() for f in ("dataset_info.json", "state.json", "dataset_dict.json")):
            raise ReadError(f"{p}: a directory that is not a dataset saved with datasets' save_to_disk")
        return Source(spath, "disk", schema, files=sorted(f for f in p.rglob("*") if f.is_file()),
                      split=split, limit=limit)
    if fmt == "disk":
        raise ReadError(f"{p}: format 'disk' needs a directory written by save_to_disk")
    if fmt in ("auto", *SCHEMAS):
        resolved = by_suffix(p.suffix) or _sniff(p)
    else:
        resolved = fmt
    if schema and resolved not in JSON_FORMATS:
        raise ReadError(f"{p}: format {fmt!r} is a JSON schema, but the file is {resolved}")
    return Source(spath, resolved, schema, files=[p], limit=limit)


def _sniff(p: Path) -> str:
    with open(p, "rb") as fh:
        head = fh.read(8192)
    if V.looks_binary(head):
        raise ReadError(f"{p}: not a text file (binary or compressed content); cannot tell its format")
    fmt = by_content(head.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n"))
    if fmt is not None:
        return fmt
    raise ReadError(
        f"{p}: cannot tell the format from the extension or the content; pass a format "
        f"(one of {', '.join(FORMATS[1:])})"
    )
