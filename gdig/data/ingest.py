"""Ingestion: read sources, validate every row, load them into the store in one transaction.

Default: any invalid row stops the ingest with a summary and nothing is written.
With skip_invalid the valid rows are loaded and each rejected row (raw text and
reason) lands in the `rejects` table.  A source whose content was already ingested
into the dataset is skipped, so re-running an ingest is a no-op, and appending a new
file to a dataset appends its rows (new positions at the end).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd
from tqdm.auto import tqdm

from gdig.data import validate as V
from gdig.data.languages import UnknownLanguage, normalize_lang
from gdig.data.readers import ReadError, content_hash, open_source, read_rows
from gdig.errors import BadInput, StoreError
from gdig.workspace import sha

ROLES = ("candidates", "seed", "eval")
POOL = "pool"  # the dataset all data.candidates sources go into
SEED = "seed"  # the dataset all data.seed sources go into
log = logging.getLogger(__name__)
MAX_EXAMPLES = 5  # rejected rows quoted in an error summary
MAX_CHARS = 20_000  # default longest source or target accepted (data.max_chars, --max-chars)


class IngestError(BadInput, ValueError):
    """Invalid input; the message is a summary (file, row, reason; counts; first examples)."""

    def __init__(self, message: str, rejects: list[tuple[str, int, str, str]] | None = None):
        super().__init__(message)
        self.rejects = rejects or []


@dataclass
class IngestResult:
    dataset: str
    role: str
    src_lang: str | None
    tgt_lang: str | None
    read: int = 0  # rows read (= added + duplicates + rejected)
    added: int = 0
    duplicates: int = 0  # exact duplicates (within the input or already in the dataset), kept once
    rejected: int = 0
    skipped_files: int = 0  # sources whose content was already ingested into this dataset
    files: list[str] = field(default_factory=list)  # sources loaded by this call
    rebuilt: bool = False  # exact ingest: the old rows were dropped (the sources changed)

    def summary(self) -> str:
        pair = f"{self.src_lang}-{self.tgt_lang}" if self.src_lang else "?"
        return (
            f"{self.dataset} ({self.role}, {pair}): read {self.read}, added {self.added}, "
            f"duplicates {self.duplicates}, rejected {self.rejected}, "
            f"skipped files {self.skipped_files} (already ingested)"
            + ("; rebuilt: its sources changed since the last ingest" if self.rebuilt else "")
        )


@dataclass
class SourceSpec:
    """One input and how to read it (a config DataSource, or a CLI path + options)."""

    path: str
    fmt: str = "auto"
    split: str | None = None
    limit: int | None = None


def example_id(src_lang: str, tgt_lang: str, src: str, tgt: str) -> str:
    """Content hash of a pair: the same text in the same direction is the same example."""
    blob = "\x1f".join((src_lang, tgt_lang, src, tgt))
    return sha(blob, 20)


def summarize_rejects(rejects: Sequence[tuple[str, int, str, str]], skipped_hint: bool = True) -> str:
    """Text summary of rejected rows: totals, count per reason, first examples (file:row: reason);
    a single rejected row is one line (file:row: reason: raw text)."""
    files = {r[0] for r in rejects}
    if len(rejects) == 1:  # one line: where, why, what was read
        file, row, reason, raw = rejects[0]
        shown = "" if not raw else f": {raw!r}" if len(raw) <= 120 else f": {raw[:117] + '...'!r}"
        line = f"{file}:{row}: {reason}{shown}" if row else f"{file}: {reason}{shown}"
        return line + ("; nothing was written (fix the input, or load the valid rows and record the rest "
                       "in the rejects table with --skip-invalid)" if skipped_hint else "")
    if len(files) == 1 and len({r[2] for r in rejects}) == 1:  # one reason in one file (a whole file
        file, row, reason, _ = rejects[0]                      # in another language pair): one line
        rows = ", ".join(str(r[1]) for r in rejects[:MAX_EXAMPLES]) + (", ..." if len(rejects) > MAX_EXAMPLES else "")
        return f"{file}:{row}: {reason}, and so are {len(rejects) - 1} more row(s) of the file (rows {rows})" + (
            "; nothing was written (fix the input, or load the valid rows and record the rest in the rejects "
            "table with --skip-invalid)" if skipped_hint else "")
    lines = [f"{len(rejects)} invalid row(s) in {len(files)} file(s)"]
    if skipped_hint:
        lines[0] += (
            "; nothing was written. Fix the input, or load the valid rows and record the rest "
            "in the rejects table with --skip-invalid (skip_invalid=True)"
        )
    lines.append("count per reason:")
    for reason, n in Counter(r[2] for r in rejects).most_common():
        lines.append(f"  {n:6d}  {reason}")
    lines.append(f"first {min(MAX_EXAMPLES, len(rejects))} example(s):")
    for file, row, reason, raw in rejects[:MAX_EXAMPLES]:
        where = f"{file}:{row}" if row else f"{file}"
        shown = raw if len(raw) <= 120 else raw[:117] + "..."
        lines.append(f"  {where}: {reason}: {shown!r}")
    return "\n".join(lines)


def _pair(src_lang: str | None, tgt_lang: str | None) -> tuple[str, str] | None:
    if (src_lang is None) != (tgt_lang is None):
        raise IngestError("give both the source and the target language, or neither")
    if src_lang is None:
        return None
    try:
        pair = normalize_lang(src_lang), normalize_lang(tgt_lang)
    except UnknownLanguage as err:
        raise IngestError(str(err)) from None
    if pair[0] == pair[1]:
        raise IngestError(f"source and target language are both {pair[0]!r}")
    return pair


def ingest(
    store,
    paths: str | Path | Iterable[str | Path],
    *,
    role: str,
    name: str,
    src_lang: str | None = None,
    tgt_lang: str | None = None,
    fmt: str = "auto",
    skip_invalid: bool = False,
    limit: int | None = None,
    split: str | None = None,
    progress: bool = True,
    max_chars: int | None = MAX_CHARS,
) -> IngestResult:
    """Ingest files into dataset `name` (role candidates | seed | eval), all in one transaction.

    limit: read at most this many rows from each path.  Raises IngestError (nothing
    written) on invalid rows unless skip_invalid.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    specs = [SourceSpec(str(p), fmt, split, limit) for p in paths]
    return ingest_sources(store, specs, role=role, name=name, src_lang=src_lang, tgt_lang=tgt_lang,
                          skip_invalid=skip_invalid, progress=progress, max_chars=max_chars)


def ingest_sources(
    store,
    specs: Sequence[SourceSpec],
    *,
    role: str,
    name: str,
    src_lang: str | None = None,
    tgt_lang: str | None = None,
    skip_invalid: bool = False,
    progress: bool = True,
    max_chars: int | None = MAX_CHARS,
    exact: bool = False,
) -> IngestResult:
    """Like `ingest`, with per-source format/split/limit.

    max_chars: a row whose source or target is longer is invalid ("source is N characters >
    max_chars M"); None: no limit.  exact: the dataset must hold exactly these sources (the
    config's view): when the files recorded for it are not where these sources start (one
    was removed, replaced or edited), it is rebuilt from them (result.rebuilt) instead of
    keeping the old rows; sources added after the recorded ones are appended as usual.
    """
    if role not in ROLES:
        raise IngestError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    if not name or not name.strip():
        raise IngestError("a dataset name is required")
    expected = _pair(src_lang, tgt_lang)
    existing = store.get_dataset(name)
    if expected is None and existing is not None:
        expected = (existing["src_lang"], existing["tgt_lang"])
    result = IngestResult(name, role, *(expected or (None, None)))
    batch = _Batch()
    opened = {}
    if exact and existing is not None:  # open all first: their hashes say whether to rebuild
        opened = {i: _open(spec, expected) for i, spec in enumerate(specs)}
        result.rebuilt = _sources_changed(store, name, [chash for _, chash in opened.values()])
    for i, spec in enumerate(specs):
        # opened with the pair known so far: an earlier file's rows may have named it
        source, chash = opened[i] if i in opened else _open(spec, expected)
        if chash in batch.hashes or (not result.rebuilt and store.file_ingested(name, chash)):
            result.skipped_files += 1
            continue
        expected = _read_source(batch, source, chash, expected, max_chars, progress)
        result.files.append(source.label)
    if not batch.files:
        return result  # every source was already ingested: a no-op
    if expected is None:
        raise IngestError(
            f"no language pair for dataset {name!r}: the input does not name its languages; "
            "give them (--src-lang/--tgt-lang, or languages: in the config)"
        )
    rows = _rows_in_pair(batch, expected)
    result.src_lang, result.tgt_lang = expected
    result.read = len(rows) + len(batch.rejects)
    if batch.rejects and not skip_invalid:
        raise IngestError(summarize_rejects(batch.rejects), batch.rejects)
    _load(store, result, rows, batch)
    return result


_COLUMNS = ("src", "tgt", "src_lang", "tgt_lang", "source_file", "source_row", "label")


@dataclass
class _Batch:
    """The rows read from the sources of one ingest: valid ones column by column (raws: their
    text, for a reject found later), rejects, and the files they came from."""

    cols: dict[str, list] = field(default_factory=lambda: {k: [] for k in _COLUMNS})
    raws: list[str] = field(default_factory=list)
    rejects: list[tuple[str, int, str, str]] = field(default_factory=list)
    files: list[tuple[str, str, int]] = field(default_factory=list)  # (label, content hash, rows read)
    hashes: set[str] = field(default_factory=set)  # of the files: the same content is read once

    def n_read(self) -> int:
        return len(self.raws) + len(self.rejects)


def _open(spec: SourceSpec, expected: tuple[str, str] | None):
    """(source, content hash) of a spec; unreadable input is an IngestError."""
    direction = expected or (None, None)
    try:
        source = open_source(spec.path, spec.fmt, split=spec.split, limit=spec.limit,
                             src_lang=direction[0], tgt_lang=direction[1])
        return source, content_hash(source)
    except (ReadError, UnknownLanguage) as err:
        raise IngestError(str(err)) from None


def _sources_changed(store, name: str, hashes: list[str]) -> bool:
    """Whether the files recorded for the dataset are not where these sources start (one was
    removed, replaced or edited); sources after the recorded ones are an append."""
    current = list(dict.fromkeys(hashes))
    recorded = store.ingested_hashes(name)
    return current[: len(recorded)] != recorded


def _read_source(batch: _Batch, source, chash: str, expected: tuple[str, str] | None,
                 max_chars: int | None, progress: bool) -> tuple[str, str] | None:
    """Read and validate one source into the batch; returns the pair, learnt from the first
    row that names its languages when none was known."""
    direction = expected or (None, None)
    batch.hashes.add(chash)
    n_before = batch.n_read()
    try:
        rows = read_rows(source, *direction)
        for row in tqdm(rows, desc=f"read {Path(source.label).name}", unit=" rows",
                        disable=not progress, leave=False):
            reason = row.reason or V.check_text(row.src, row.tgt, max_chars)
            if reason:
                batch.rejects.append((row.file, row.row, reason, row.raw))
                continue
            if expected is None and row.src_lang and row.tgt_lang:
                expected = (row.src_lang, row.tgt_lang)  # first row that names its languages
            for key, value in zip(_COLUMNS, (row.src, row.tgt, row.src_lang, row.tgt_lang,
                                             row.file, row.row, row.label)):
                batch.cols[key].append(value)
            batch.raws.append(row.raw)
    except (ReadError, UnknownLanguage) as err:
        raise IngestError(str(err)) from None
    batch.files.append((source.label, chash, batch.n_read() - n_before))
    return expected


def _rows_in_pair(batch: _Batch, expected: tuple[str, str]) -> pd.DataFrame:
    """The batch's valid rows as a frame in the dataset's pair; a row that names another pair
    becomes a reject (batch.rejects ends sorted by file and row)."""
    rows = pd.DataFrame(batch.cols)
    rows["source_row"] = rows["source_row"].astype("int64")
    rows["src_lang"] = rows["src_lang"].fillna(expected[0])
    rows["tgt_lang"] = rows["tgt_lang"].fillna(expected[1])
    bad = (rows["src_lang"] != expected[0]) | (rows["tgt_lang"] != expected[1])
    for i in rows.index[bad]:
        r = rows.loc[i]
        batch.rejects.append((r["source_file"], int(r["source_row"]),
                              V.wrong_pair((r["src_lang"], r["tgt_lang"]), expected), batch.raws[i]))
    batch.rejects.sort(key=lambda r: (r[0], r[1]))
    return rows[~bad].reset_index(drop=True)


def _load(store, result: IngestResult, rows: pd.DataFrame, batch: _Batch) -> None:
    """Write the rows and rejects in one store transaction; the counts go into result."""
    pair = (result.src_lang, result.tgt_lang)
    rows["example_id"] = [example_id(*pair, s, t) for s, t in zip(rows["src"], rows["tgt"])]
    rej = pd.DataFrame(batch.rejects, columns=["source_file", "source_row", "reason", "raw"])
    try:
        counts = store.add_rows(dataset=result.dataset, role=result.role, src_lang=pair[0], tgt_lang=pair[1],
                                rows=rows, rejects=rej, files=batch.files, replace=result.rebuilt)
    except StoreError as err:
        raise IngestError(str(err)) from None
    result.added, result.duplicates, result.rejected = counts["added"], counts["duplicates"], counts["rejected"]


def _source_name(src) -> str:
    if src.name:
        return src.name
    try:
        return open_source(src.path, "hub" if src.path.startswith("hf:") else "auto").stem
    except ReadError:
        return Path(src.path).stem or Path(src.path).name


def _warn_rebuilt(result: IngestResult) -> None:
    if result.rebuilt:
        log.warning("dataset %r: its sources in the config changed since the last ingest; rebuilt from "
                    "them (%d rows), the old rows are not used", result.dataset, result.added)


def _require_held_out_eval(cfg) -> None:
    """An eval source that is a candidates or seed source (the same file, or a byte copy of it)
    would score models on rows they were selected from: an error before anything is written."""
    import hashlib

    from gdig.workspace import feed_file

    def content(path: str) -> str | None:  # the bytes alone (a copy under another name is the same)
        if not Path(path).is_file():
            return None
        h = hashlib.sha256()
        feed_file(h, path)
        return h.hexdigest()

    taken = {}
    for role in ("candidates", "seed"):
        for s in getattr(cfg.data, role):
            digest = content(s.path)
            if digest:
                taken.setdefault(digest, f"data.{role} source {s.path}")
    for s in cfg.data.eval:
        digest = content(s.path)
        other = taken.get(digest) if digest else None
        if other:
            raise IngestError(f"data.eval source {s.path}: the same rows as the {other}; an eval set must be "
                              f"held out from the candidates and the seed set")


def ingest_config(cfg, store, progress: bool = True) -> dict[str, list[str]]:
    """Ingest every source of a GdigConfig: candidates -> "pool", seed -> "seed", each eval
    source -> its own dataset (source.name or file stem).  Returns role -> dataset names.
    Re-running is a no-op for content already in the store; the config is the truth: a dataset
    whose sources were removed, replaced or edited since is rebuilt from the config's sources
    (with a warning), never reused."""
    _require_held_out_eval(cfg)
    pair = dict(src_lang=cfg.languages.src, tgt_lang=cfg.languages.tgt)
    opts = dict(skip_invalid=cfg.data.skip_invalid, progress=progress, max_chars=cfg.data.max_chars,
                exact=True, **pair)
    spec = lambda s: SourceSpec(s.path, s.format, s.split, s.limit)  # noqa: E731
    out: dict[str, list[str]] = {"candidates": [], "seed": [], "eval": []}
    if cfg.data.candidates:
        _warn_rebuilt(ingest_sources(store, [spec(s) for s in cfg.data.candidates], role="candidates", name=POOL,
                                     **opts))
        out["candidates"].append(POOL)
    if cfg.data.seed:
        _warn_rebuilt(ingest_sources(store, [spec(s) for s in cfg.data.seed], role="seed", name=SEED, **opts))
        out["seed"].append(SEED)
    for s in cfg.data.eval:
        name = _source_name(s)
        if name in (POOL, SEED) or name in out["eval"]:
            raise IngestError(
                f"eval source {s.path}: dataset name {name!r} is taken; give the source a distinct name:"
            )
        _warn_rebuilt(ingest_sources(store, [spec(s)], role="eval", name=name, **opts))
        out["eval"].append(name)
    return out
