"""TSV: two tab-separated columns, source then target, with an optional header line."""

from __future__ import annotations

from typing import Iterator

from gdig.data import validate as V
from gdig.data.readers.common import Row, Source, checked_bytes

_HEADERS = {("src", "tgt"), ("source", "target"), ("src", "trg")}


def read_tsv(source: Source, direction) -> Iterator[Row]:
    p = source.files[0]
    data, problem = checked_bytes(source, p)
    if problem:
        yield problem
        return
    sl, tl = direction or (None, None)
    for n, line in enumerate(V.split_lines(data), start=1):
        text, bad = V.decode_line(line)
        if bad:
            yield Row(str(p), n, None, None, sl, tl, None, text, bad)
            continue
        cols = text.split("\t")
        if n == 1 and tuple(c.strip().lower() for c in cols) in _HEADERS:
            continue  # header line
        if len(cols) != 2:
            yield Row(str(p), n, None, None, sl, tl, None, text, V.wrong_columns(len(cols)))
            continue
        yield Row(str(p), n, cols[0], cols[1], sl, tl, None, text)
