"""Readers for parallel data: one `Row` per input row, problems attached, nothing dropped.

Formats (``fmt``; "auto" guesses from the path and the content):

- ``jsonl`` / ``json``: JSON lines or a JSON list of objects.  The object schema is
  detected from the first object: ``src``/``tgt`` (+ optional ``src_lang``/``tgt_lang``,
  ``label``), the reference G-DIG schema (``src_lang, trg_lang, src_text, trg_text``,
  languages as names like "German"), or Hugging Face translation rows
  (``{"translation": {"de": ..., "en": ...}}``).  ``gdig`` / ``hf`` force a schema.
- ``tsv``: two tab-separated columns, source then target (an optional ``src\\ttgt`` header).
- ``moses``: two plain-text files ``x.de`` + ``x.en`` with one segment per line; the
  path is the prefix ``x`` or either file.
- ``disk``: a directory written by ``datasets.save_to_disk`` (``split`` picks one of a
  DatasetDict), with src/tgt columns, G-DIG columns or a ``translation`` column.
- ``hub``: ``hf:<name>`` or ``hf:<name>:<config>``, loaded with ``datasets.load_dataset``.

Formats that carry both languages without a direction (translation rows, Moses pairs)
take the direction from the caller's ``src_lang``/``tgt_lang``.

Files are read as bytes and decoded per line, so one bad line is one reject, not a
failed file.  Problems that concern the whole file (empty, not what its extension
says) come out as a Row with row number 0.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from gdig.data import validate as V
from gdig.data.languages import UnknownLanguage, normalize_lang
from gdig.errors import BadInput
from gdig.workspace import feed_file

FORMATS = ("auto", "jsonl", "json", "gdig", "hf", "tsv", "moses", "disk", "hub")
_JSON_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json"}
_TSV_SUFFIXES = {".tsv", ".tab"}
_HEADERS = {("src", "tgt"), ("source", "target"), ("src", "trg")}


class ReadError(BadInput, ValueError):
    """A source that cannot be read at all (missing file, no direction, unreachable hub...)."""


@dataclass
class Row:
    file: str
    row: int  # 1-based; 0 = a problem with the whole file
    src: str | None
    tgt: str | None
    src_lang: str | None
    tgt_lang: str | None
    label: str | None
    raw: str
    reason: str | None = None  # why the row cannot be used, found while reading


@dataclass
class Source:
    """A resolved input: what to read and how, plus the bytes that identify its content."""

    path: str  # as the caller gave it
    fmt: str  # resolved: jsonl, json, tsv, moses, disk, hub
    schema: str | None = None  # forced object schema: "gdig" or "hf" (None: detect)
    files: list[Path] = field(default_factory=list)
    split: str | None = None
    limit: int | None = None
    hub_name: str | None = None
    hub_config: str | None = None

    @property
    def label(self) -> str:
        if self.fmt == "moses" and len(self.files) == 2:
            return f"{self.files[0]} + {self.files[1]}"
        return self.path

    @property
    def stem(self) -> str:
        """A default dataset name for this source."""
        if self.fmt == "hub":
            return (self.hub_name or self.path).rstrip("/").split("/")[-1]
        if self.fmt == "moses":
            return self.files[0].stem  # x.de -> x
        p = Path(self.path)
        return p.name if self.fmt == "disk" else p.stem


# -- resolving a path to a Source --------------------------------------------------------------


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
    schema = fmt if fmt in ("gdig", "hf") else None
    if fmt == "hub" or (fmt == "auto" and spath.startswith("hf:")):
        name = spath[3:] if spath.startswith("hf:") else spath
        name, _, config = name.partition(":")
        return Source(spath, "hub", split=split, limit=limit, hub_name=name, hub_config=config or None)
    p = Path(spath)
    if fmt == "moses" or (fmt == "auto" and _moses_candidate(p)):
        return Source(spath, "moses", files=_moses_files(p, src_lang, tgt_lang), limit=limit)
    if not p.exists():
        raise ReadError(f"{p}: no such file or directory")
    if p.is_dir():
        if fmt not in ("auto", "disk", "gdig", "hf"):
            raise ReadError(f"{p}: is a directory, not a {fmt} file")
        if not any((p / f).exists() for f in ("dataset_info.json", "state.json", "dataset_dict.json")):
            raise ReadError(f"{p}: a directory that is not a dataset saved with datasets' save_to_disk")
        return Source(spath, "disk", schema, files=sorted(f for f in p.rglob("*") if f.is_file()),
                      split=split, limit=limit)
    if fmt == "disk":
        raise ReadError(f"{p}: format 'disk' needs a directory written by save_to_disk")
    if fmt in ("auto", "gdig", "hf"):
        resolved = _JSON_SUFFIXES.get(p.suffix.lower()) or ("tsv" if p.suffix.lower() in _TSV_SUFFIXES else None)
        resolved = resolved or _sniff(p)
    else:
        resolved = fmt
    if schema and resolved not in ("jsonl", "json"):
        raise ReadError(f"{p}: format {fmt!r} is a JSON schema, but the file is {resolved}")
    return Source(spath, resolved, schema, files=[p], limit=limit)


def _lang_suffix(p: Path) -> str | None:
    suffix = p.suffix[1:]
    if not suffix or suffix.lower() in ("json", "jsonl", "tsv", "txt", "gz"):
        return None
    try:
        return normalize_lang(suffix)
    except UnknownLanguage:
        return None


def _siblings_by_lang(prefix: Path) -> dict[str, Path]:
    """Files `prefix.<lang>` beside the prefix, keyed by normalised language."""
    if not prefix.parent.is_dir():
        return {}
    out = {}
    for f in prefix.parent.glob(prefix.name + ".*"):
        if f.is_file() and f.stem == prefix.name:
            lang = _lang_suffix(f)
            if lang:
                out[lang] = f
    return out


def _moses_candidate(p: Path) -> bool:
    if p.is_file():
        return _lang_suffix(p) is not None and len(_siblings_by_lang(p.with_suffix(""))) >= 2
    return not p.exists() and len(_siblings_by_lang(p)) >= 2


def _moses_files(p: Path, src_lang: str | None, tgt_lang: str | None) -> list[Path]:
    prefix = p.with_suffix("") if p.is_file() and _lang_suffix(p) else p
    found = _siblings_by_lang(prefix)
    if src_lang is None or tgt_lang is None:
        langs = ", ".join(f.name for f in found.values()) or "no language files"
        raise ReadError(
            f"{p}: a Moses pair of files ({langs}) has no direction; give the source and target "
            "language (--src-lang/--tgt-lang, or languages: in the config)"
        )
    sl, tl = normalize_lang(src_lang), normalize_lang(tgt_lang)
    missing = [f"{prefix}.{lang}" for lang in (sl, tl) if lang not in found]
    if missing:
        raise ReadError(f"{p}: Moses pair incomplete: no file {' or '.join(missing)}")
    return [found[sl], found[tl]]


def _sniff(p: Path) -> str:
    with open(p, "rb") as fh:
        head = fh.read(8192)
    if V.looks_binary(head):
        raise ReadError(f"{p}: not a text file (binary or compressed content); cannot tell its format")
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
    if text.startswith("["):
        return "json"
    if text.startswith("{"):
        return "jsonl"
    first = text.split("\n", 1)[0]
    if "\t" in first:
        return "tsv"
    raise ReadError(
        f"{p}: cannot tell the format from the extension or the content; pass a format "
        f"(one of {', '.join(FORMATS[1:])})"
    )


# -- content hashes (idempotent re-ingest) -----------------------------------------------------


def content_hash(source: Source) -> str:
    """Hash of what the source reads: file bytes (in reading order) + split/limit/schema."""
    h = hashlib.sha256(f"{source.fmt}|{source.schema}|{source.split}|{source.limit}".encode())
    if source.fmt == "hub":
        h.update(f"|{source.hub_name}|{source.hub_config}|{_hub_fingerprint(source)}".encode())
        return h.hexdigest()
    base = Path(source.path) if source.fmt == "disk" else None
    for f in source.files:
        if base is not None:
            h.update(str(f.relative_to(base)).encode())
        feed_file(h, f)
        h.update(b"\x00")
    return h.hexdigest()


# -- reading rows ------------------------------------------------------------------------------


def read_rows(source: Source, src_lang: str | None = None, tgt_lang: str | None = None) -> Iterator[Row]:
    """Rows of a source in input order, at most `source.limit` of them."""
    direction = None
    if src_lang and tgt_lang:
        direction = (normalize_lang(src_lang), normalize_lang(tgt_lang))
    reader = {
        "jsonl": _read_jsonl, "json": _read_json, "tsv": _read_tsv, "moses": _read_moses,
        "disk": _read_disk, "hub": _read_hub,
    }[source.fmt]
    for i, row in enumerate(reader(source, direction)):
        if source.limit is not None and i >= source.limit:
            break
        yield row


def _file_bytes(p: Path) -> bytes:
    try:
        return p.read_bytes()
    except OSError as err:
        raise ReadError(f"{p}: cannot read: {err}") from None


def _file_problem(source: Source, p: Path, data: bytes) -> Row | None:
    """Whole-file problems: empty, or binary where text is expected."""
    if not data.strip():
        return Row(str(p), 0, None, None, None, None, None, "", V.EMPTY_FILE)
    if V.looks_binary(data[:8192]):
        raw = data[:200].decode("utf-8", errors="backslashreplace")
        return Row(str(p), 0, None, None, None, None, None, raw,
                   V.not_format("text", p.suffix or source.fmt))
    return None


def _checked_bytes(source: Source, p: Path) -> tuple[bytes, Row | None]:
    """A text file's bytes and its whole-file problem (None when it has none)."""
    data = _file_bytes(p)
    return data, _file_problem(source, p, data)


def _read_jsonl(source: Source, direction) -> Iterator[Row]:
    p = source.files[0]
    data, problem = _checked_bytes(source, p)
    if problem:
        yield problem
        return
    parser = _RecordParser(str(p), source.schema, direction)
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


def _read_json(source: Source, direction) -> Iterator[Row]:
    p = source.files[0]
    data, problem = _checked_bytes(source, p)
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
            yield from _read_jsonl(source, direction)
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
    parser = _RecordParser(str(p), source.schema, direction)
    for n, rec in enumerate(records, start=1):
        raw = json.dumps(rec, ensure_ascii=False)
        if _has_surrogates(raw):
            yield Row(str(p), n, None, None, None, None, None, json.dumps(rec), V.INVALID_UTF8)
            continue
        yield parser.row(n, rec, raw)


def _has_surrogates(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def _read_tsv(source: Source, direction) -> Iterator[Row]:
    p = source.files[0]
    data, problem = _checked_bytes(source, p)
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


def _read_moses(source: Source, direction) -> Iterator[Row]:
    fs, ft = source.files
    if direction is None:
        raise ReadError(f"{fs} + {ft}: a Moses pair has no direction; give src_lang/tgt_lang")
    (src_data, src_problem), (tgt_data, tgt_problem) = _checked_bytes(source, fs), _checked_bytes(source, ft)
    problem = src_problem or tgt_problem
    if problem:
        yield problem
        return
    src_lines, tgt_lines = V.split_lines(src_data), V.split_lines(tgt_data)
    if len(src_lines) != len(tgt_lines):
        raise ReadError(
            f"Moses pair with different line counts: {fs} has {len(src_lines)} lines, "
            f"{ft} has {len(tgt_lines)} lines"
        )
    label = f"{fs}"
    for n, (a, b) in enumerate(zip(src_lines, tgt_lines), start=1):
        s, bad_s = V.decode_line(a)
        t, bad_t = V.decode_line(b)
        yield Row(label, n, s, t, direction[0], direction[1], None, f"{s}\t{t}", bad_s or bad_t)


def _read_records(path: str, records: Iterable[dict[str, Any]], schema, direction) -> Iterator[Row]:
    parser = _RecordParser(path, schema, direction)
    for n, rec in enumerate(records, start=1):
        yield parser.row(n, rec, json.dumps(rec, ensure_ascii=False, default=str))


def _pick_split(obj, split: str | None, where: str):
    from datasets import DatasetDict

    if isinstance(obj, DatasetDict):
        if split is None:
            if len(obj) == 1:
                return next(iter(obj.values()))
            raise ReadError(f"{where}: holds splits {', '.join(obj)}; choose one (split / --split)")
        if split not in obj:
            raise ReadError(f"{where}: no split {split!r}; splits: {', '.join(obj)}")
        return obj[split]
    return obj


def _read_disk(source: Source, direction) -> Iterator[Row]:
    from datasets import load_from_disk

    try:
        ds = load_from_disk(source.path)
    except Exception as err:  # datasets raises several types for a bad directory
        raise ReadError(f"{source.path}: cannot load a saved dataset: {err}") from None
    ds = _pick_split(ds, source.split, source.path)
    if len(ds) == 0:
        yield Row(source.path, 0, None, None, None, None, None, "", V.EMPTY_FILE)
        return
    yield from _read_records(source.path, ds, source.schema, direction)


def _load_hub(source: Source):
    import datasets

    try:
        return datasets.load_dataset(source.hub_name, source.hub_config, split=source.split)
    except Exception as err:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1"
        raise ReadError(
            f"{source.path}: cannot load hub dataset {source.hub_name!r}: the network / Hugging Face hub "
            f"is not reachable{' (HF_HUB_OFFLINE=1)' if offline else ''} or the dataset does not exist "
            f"({type(err).__name__}: {str(err)[:200]}). Where the network allows, load it with "
            f"datasets.load_dataset and save it with save_to_disk, then ingest that directory."
        ) from None


def _hub_fingerprint(source: Source) -> str:
    ds = _pick_split(_load_hub(source), source.split, source.path)
    return getattr(ds, "_fingerprint", "") or ""


def _read_hub(source: Source, direction) -> Iterator[Row]:
    ds = _pick_split(_load_hub(source), source.split, source.path)
    yield from _read_records(source.path, ds, source.schema, direction)


# -- object schemas ------------------------------------------------------------------------


def detect_schema(rec: dict[str, Any]) -> str:
    if "translation" in rec:
        return "hf"
    if "src_text" in rec or "trg_text" in rec:
        return "gdig"
    return "pair"


class _RecordParser:
    """Turns one JSON object / dataset row into a Row; the schema is fixed by the first object."""

    def __init__(self, path: str, schema: str | None, direction: tuple[str, str] | None):
        self.path, self.schema, self.direction = path, schema, direction

    def row(self, n: int, rec: Any, raw: str) -> Row:
        if not isinstance(rec, dict):
            return Row(self.path, n, None, None, None, None, None, raw, "row is not a JSON object")
        if self.schema is None:
            self.schema = detect_schema(rec)
        if self.schema == "hf":
            return self._hf(n, rec, raw)
        keys = ("src_text", "trg_text", "src_lang", "trg_lang") if self.schema == "gdig" else (
            "src", "tgt", "src_lang", "tgt_lang")
        out = Row(self.path, n, None, None, None, None, _label(rec.get("label")), raw)
        texts = []
        for key in keys[:2]:
            value = rec.get(key)
            if value is None:
                out.reason = out.reason or V.missing_field(key)
            elif not isinstance(value, str):
                out.reason = out.reason or V.not_a_string(key)
            texts.append(value if isinstance(value, str) else None)
        out.src, out.tgt = texts
        langs = []
        for key in keys[2:]:
            code, bad = V.norm_lang(rec.get(key))
            out.reason = out.reason or bad
            langs.append(code)
        out.src_lang, out.tgt_lang = langs
        if self.direction:  # rows without their own language fields take the caller's
            out.src_lang = out.src_lang or self.direction[0]
            out.tgt_lang = out.tgt_lang or self.direction[1]
        return out

    def _hf(self, n: int, rec: dict[str, Any], raw: str) -> Row:
        if self.direction is None:
            raise ReadError(
                f"{self.path}: Hugging Face translation rows carry both languages without a direction; "
                "give the source and target language (--src-lang/--tgt-lang, or languages: in the config)"
            )
        sl, tl = self.direction
        out = Row(self.path, n, None, None, sl, tl, _label(rec.get("label")), raw)
        tr = rec.get("translation")
        if not isinstance(tr, dict):
            out.reason = V.missing_field("translation")
            return out
        by_lang = {}
        for key, value in tr.items():
            code, bad = V.norm_lang(key)
            if bad:
                out.reason = bad
                return out
            by_lang[code] = value
        if sl not in by_lang or tl not in by_lang:
            others = [c for c in by_lang if c not in (sl, tl)]
            if others and len(by_lang) == 2:  # e.g. {"fr", "en"} where de-en is expected
                got = (sl if sl in by_lang else others[0], tl if tl in by_lang else others[-1])
                out.reason = V.wrong_pair(got, (sl, tl))
            else:
                out.reason = V.missing_field(f"translation.{sl if sl not in by_lang else tl}")
            return out
        for lang, attr in ((sl, "src"), (tl, "tgt")):
            value = by_lang[lang]
            if value is None:
                out.reason = out.reason or V.missing_field(f"translation.{lang}")
            elif not isinstance(value, str):
                out.reason = out.reason or V.not_a_string(f"translation.{lang}")
            else:
                setattr(out, attr, value)
        return out


def _label(value: Any) -> str | None:
    return None if value is None else str(value)
