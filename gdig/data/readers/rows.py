"""Reading a Source: rows in input order (through the reader of its format) and the hash of
its content (so that re-ingesting the same content is a no-op)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterator

from gdig.data.languages import normalize_lang
from gdig.data.readers.common import Row, Source
from gdig.data.readers.formats import READERS
from gdig.data.readers.hf_datasets import hub_fingerprint
from gdig.workspace import feed_file


def read_rows(source: Source, src_lang: str | None = None, tgt_lang: str | None = None) -> Iterator[Row]:
    """Rows of a source in input order, at most `source.limit` of them."""
    direction = None
    if src_lang and tgt_lang:
        direction = (normalize_lang(src_lang), normalize_lang(tgt_lang))
    reader = READERS[source.fmt].read
    for i, row in enumerate(reader(source, direction)):
        if source.limit is not None and i >= source.limit:
            break
        yield row


def content_hash(source: Source) -> str:
    """Hash of what the source reads: file bytes (in reading order) + split/limit/schema."""
    h = hashlib.sha256(f"{source.fmt}|{source.schema}|{source.split}|{source.limit}".encode())
    if source.fmt == "hub":
        h.update(f"|{source.hub_name}|{source.hub_config}|{hub_fingerprint(source)}".encode())
        return h.hexdigest()
    base = Path(source.path) if source.fmt == "disk" else None
    for f in source.files:
        if base is not None:
            h.update(str(f.relative_to(base)).encode())
        feed_file(h, f)
        h.update(b"\x00")
    return h.hexdigest()
