"""JSON files: JSON lines (``.jsonl``) or a JSON list of objects (``.json``, also
``{"data": [...]}`` and JSON lines under a ``.json`` name); each object goes through
records.RecordParser."""

from __future__ import annotations

import json
from typing import Iterator

from gdig.data import validate as V
from gdig.data.readers.common import Row, Source, checked_bytes
from gdig.data.readers.records import RecordParser


def read_jsonl(source: Source, direction) -> Iterator[Row]:
    p = source.files[0]
    data, problem = checked_bytes(source, p)
    if problem:
        yield problem
        return
    parser = RecordParser(str(p), source.schema, direction)
    for n, line in enumerate(V.split_lines(data), start=1):
        text, bad = V.decode_line(line)
        if not text.strip():
            continue  # a blank line holds no row
        if bad:
            yield Row(str(p), n, None, None, None, None, None, text, bad)
            continue
        try:
            rec = json.loads(text)
        except json.JSONDecodeError:
            yield Row(str(p), n, None, None, None, None, None, text, V.not_format("JSON", p.suffix or ".jsonl"))
            continue
        yield parser.row(n, rec, text)


def read_json(source: Source, direction) -> Iterator[Row]:
    p = source.files[0]
    data, problem = checked_bytes(source, p)
    if problem:
        yield problem
        return
    # surrogateescape keeps undecodable bytes as lone surrogates: found per row below
    text = data.decode("utf-8", errors="surrogateescape").lstrip("\ufeff")
    try:
        records = json.loads(text)
    except json.JSONDecodeError as err:
        if err.msg == "Extra data" and text.lstrip().startswith("{"):
            # JSON lines under a .json name (datasets' to_json writes these)
            yield from read_jsonl(source, direction)
            return
        raw = data[:200].decode("utf-8", errors="backslashreplace")
        yield Row(str(p), 0, None, None, None, None, None, raw, V.not_format("JSON", p.suffix or ".json"))
        return
    if isinstance(records, dict) and len(records) == 1 and isinstance(next(iter(records.values())), list):
        records = next(iter(records.values()))  # {"data": [...]}
    if not isinstance(records, list):
        raw = data[:200].decode("utf-8", errors="backslashreplace")
        yield Row(str(p), 0, None, None, None, None, None, raw, "expected a JSON list of rows")
        return
    if not records:
        yield Row(str(p), 0, None, None, None, None, None, "[]", V.EMPTY_FILE)
        return
    parser = RecordParser(str(p), source.schema, direction)
    for n, rec in enumerate(records, start=1):
        raw = json.dumps(rec, ensure_ascii=False)
        if _has_surrogates(raw):
            yield Row(str(p), n, None, None, None, None, None, json.dumps(rec), V.INVALID_UTF8)
            continue
        yield parser.row(n, rec, raw)


def _has_surrogates(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)
