"""Moses pairs: two plain-text files ``x.<src>`` + ``x.<tgt>``, one segment per line, found
from the prefix ``x`` or either file; the direction comes from the caller."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from gdig.data import validate as V
from gdig.data.languages import UnknownLanguage, normalize_lang
from gdig.data.readers.common import ReadError, Row, Source, checked_bytes


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


def moses_candidate(p: Path) -> bool:
    """Is `p` one file of a Moses pair, or the prefix of one?"""
    if p.is_file():
        return _lang_suffix(p) is not None and len(_siblings_by_lang(p.with_suffix(""))) >= 2
    return not p.exists() and len(_siblings_by_lang(p)) >= 2


def moses_files(p: Path, src_lang: str | None, tgt_lang: str | None) -> list[Path]:
    """The source and target files of the pair at `p`, in that order."""
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


def read_moses(source: Source, direction) -> Iterator[Row]:
    fs, ft = source.files
    if direction is None:
        raise ReadError(f"{fs} + {ft}: a Moses pair has no direction; give src_lang/tgt_lang")
    (src_data, src_problem), (tgt_data, tgt_problem) = checked_bytes(source, fs), checked_bytes(source, ft)
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
