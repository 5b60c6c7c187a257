"""Injection of the classic parallel-data noise types into any corpus, each row labelled.

Types (the usual suspects of web-crawled parallel data):
- misaligned: the target of another row
- untranslated: the target is a copy of the source
- wrong_language: the target is text in another language (the source side of another
  row, or a sentence from a caller-given pool of other-language text)
- truncated: the target is cut to a prefix
- shuffled: the target's words in a shuffled order
- fragment: both sides cut to short, unaligned fragments of one or two words

Types the model's own loss cannot see (`HIDDEN_NOISE_TYPES`; not injected unless asked for):
- machine_translated: the target replaced by a system's translation of the source, given by the
  caller (`machine_translations`, row -> text; e.g. the base model's own greedy output)
- near_duplicate: a few clean pairs repeated many times with trivial edits (case, final
  punctuation, a number) that exact deduplication misses; the pairs copied stay clean
- hard_misaligned: the target of the most similar other pair (character-trigram cosine of
  source plus target), a fluent translation of a related sentence
- omission: an inner clause (between , ; : or their CJK forms) dropped from the target, which
  keeps its first and last clauses and so still reads like a sentence

And one more the caller must provide for (not in `HIDDEN_NOISE_TYPES`):
- own_translation: the target replaced by the scoring model's own translation of the source
  (`own_translations`, row -> text), kept apart from `machine_translated` because influence at
  that model sees its own outputs differently from other systems'

A translation that copies the source (edit-distance similarity >= 0.9, casefolded) never
counts as either: it is an untranslated row.

Exactly round(rate * n) rows become noisy, split as evenly as possible across the
types (the first types in `types` take the remainder); deterministic for a seed.
A noisy row always differs from its clean version.
"""

from __future__ import annotations

import re
import zlib
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

NOISE_TYPES = ("misaligned", "untranslated", "wrong_language", "truncated", "shuffled", "fragment")
HIDDEN_NOISE_TYPES = ("machine_translated", "near_duplicate", "hard_misaligned", "omission")
ALL_NOISE_TYPES = NOISE_TYPES + HIDDEN_NOISE_TYPES + ("own_translation",)
CLEAN = "clean"
_TRIES = 20  # random draws before a row is judged unfit for a type


def noise_counts(n: int, rate: float, types: Sequence[str] = NOISE_TYPES) -> dict[str, int]:
    """How many rows of each type inject_noise makes for n rows at `rate`."""
    k = round(rate * n)
    base, extra = divmod(k, len(types))
    return {t: base + (1 if i < extra else 0) for i, t in enumerate(types)}


def _units(text: str) -> tuple[list[str], str]:
    """Words, or characters for text without spaces (Chinese, Japanese...); and the joiner."""
    words = text.split()
    if len(words) >= 2:
        return words, " "
    return list(text.strip()), ""


_CLAUSE_BREAK = re.compile(r"(?<=[,;:，；：、])")
_NUMBER = re.compile(r"\d+")
COPIES_PER_PAIR = 10  # near_duplicate: copies of each pair repeated (a few pairs, many times)


def split_clauses(text: str) -> list[str]:
    """The text cut after each clause mark (, ; : and their CJK forms); joined back it is the text."""
    return [c for c in _CLAUSE_BREAK.split(text) if c]


def drop_clause(text: str, k: int) -> str:
    """The text without its clause k, an inner one (neither the first nor the last)."""
    parts = split_clauses(text)
    if not 0 < k < len(parts) - 1:
        raise ValueError(f"clause {k} of {len(parts)}: only an inner clause can be dropped")
    return "".join(parts[:k] + parts[k + 1:]).strip()


def trivial_edit(text: str, v: int) -> str:
    """Edit v (1, 2, ...) of a text: case of the first letter (v % 2), final punctuation ((v // 2) % 3:
    kept, removed, '!'), and from v >= 6 the first number raised by v // 6 (or the number appended)."""
    case, punct, number = v % 2, (v // 2) % 3, v // 6
    out = text.strip()
    if case:
        out = out[:1].swapcase() + out[1:]
    if punct:
        body = out.rstrip(".!?。！？")
        out = body if punct == 1 else body + "!"
    if number:
        m = _NUMBER.search(out)
        out = (out[:m.start()] + str(int(m.group()) + number) + out[m.end():]) if m else f"{out} {number}"
    return out


def _trigrams(texts: list[str], dim: int = 1 << 18):
    """Sparse unit rows of hashed character-trigram counts (crc32, so the same on every run)."""
    from scipy import sparse

    rows, cols = [], []
    for i, t in enumerate(texts):
        t = f"  {t.casefold()} "
        for j in range(len(t) - 2):
            rows.append(i)
            cols.append(zlib.crc32(t[j:j + 3].encode("utf-8")) % dim)
    x = sparse.csr_matrix((np.ones(len(rows), np.float64), (rows, cols)), shape=(len(texts), dim))
    x.sum_duplicates()
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    return sparse.diags(1.0 / np.maximum(norms, 1e-12)) @ x


def most_similar(src: list[str], tgt: list[str], block: int = 1024) -> np.ndarray:
    """For each pair, the other pair with the highest source + target trigram cosine whose target
    differs (-1 if none); ties go to the lower index."""
    xs, xt = _trigrams(src), _trigrams(tgt)
    tgt_arr = np.array(tgt, dtype=object)
    best = np.full(len(src), -1, dtype=np.int64)
    for lo in range(0, len(src), block):
        sim = (xs[lo:lo + block] @ xs.T + xt[lo:lo + block] @ xt.T).toarray()
        same = tgt_arr[lo:lo + block, None] == tgt_arr[None, :]  # itself and identical targets
        sim[same] = -np.inf
        j = sim.argmax(axis=1)
        ok = np.isfinite(sim[np.arange(len(j)), j])
        best[lo:lo + block] = np.where(ok, j, -1)
    return best


COPY_SIMILARITY = 0.9  # the prefilter's default copies.max_similarity


def _copies(text: str, source: str) -> bool:
    """True when `text` repeats the source (edit-distance similarity of the casefolded strings)."""
    from rapidfuzz import fuzz

    return fuzz.ratio(text.strip().casefold(), source.strip().casefold()) / 100.0 >= COPY_SIMILARITY


class _Noiser:
    def __init__(self, src: list[str], tgt: list[str], rng: np.random.Generator, other: list[str] | None,
                 mt: Mapping[int, str] | None = None, own: Mapping[int, str] | None = None):
        self.src, self.tgt, self.rng, self.other, self.mt, self.own = src, tgt, rng, other, mt, own
        self._similar: np.ndarray | None = None
        self.reserved: set[int] = set()  # clean rows other rows copy (near_duplicate): never noised
        self._seen = set(zip(src, tgt))
        self._dup: list[list[int]] = []  # near_duplicate: [pair copied, copies made, next edit]

    def _other_row(self, i: int, ok: Callable[[int], bool]) -> int | None:
        n = len(self.src)
        for _ in range(_TRIES):
            j = int(self.rng.integers(n))
            if j != i and ok(j):
                return j
        return None

    def misaligned(self, i: int):
        j = self._other_row(i, lambda j: self.tgt[j] != self.tgt[i])
        return None if j is None else (self.src[i], self.tgt[j])

    def untranslated(self, i: int):
        return (self.src[i], self.src[i]) if self.src[i] != self.tgt[i] else None

    def wrong_language(self, i: int):
        bad = {self.tgt[i], self.src[i]}
        if self.other:
            for _ in range(_TRIES):
                text = self.other[int(self.rng.integers(len(self.other)))]
                if text not in bad:
                    return self.src[i], text
            return None
        j = self._other_row(i, lambda j: self.src[j] not in bad)
        return None if j is None else (self.src[i], self.src[j])

    def truncated(self, i: int):
        units, sep = _units(self.tgt[i])
        if len(units) < 2:
            return None
        keep = min(len(units) - 1, max(1, int(len(units) * self.rng.uniform(0.3, 0.7))))
        return self.src[i], sep.join(units[:keep])

    def shuffled(self, i: int):
        units, sep = _units(self.tgt[i])
        if len(set(units)) < 2:
            return None
        for _ in range(_TRIES):
            out = sep.join(units[k] for k in self.rng.permutation(len(units)))
            if out != self.tgt[i]:
                return self.src[i], out
        return None

    def _fragment(self, text: str) -> str:
        units, sep = _units(text)
        if not units:
            return text
        size = min(len(units), int(self.rng.integers(1, 3)))
        start = int(self.rng.integers(len(units) - size + 1))
        return sep.join(units[start:start + size])

    def fragment(self, i: int):
        out = (self._fragment(self.src[i]), self._fragment(self.tgt[i]))
        return out if out != (self.src[i], self.tgt[i]) and all(s.strip() for s in out) else None

    def _translated(self, i: int, given: Mapping[int, str] | None, kind: str, arg: str):
        if given is None:
            raise ValueError(f"noise type {kind!r} needs {arg} (row -> text)")
        text = given.get(i)
        if text is None or not text.strip() or text.strip() == self.tgt[i].strip() or _copies(text, self.src[i]):
            return None  # a copy of the source is an untranslated row, never a translation
        return self.src[i], text.strip()

    def machine_translated(self, i: int):
        return self._translated(i, self.mt, "machine_translated", "machine_translations")

    def own_translation(self, i: int):
        return self._translated(i, self.own, "own_translation", "own_translations")

    def hard_misaligned(self, i: int):
        if self._similar is None:
            self._similar = most_similar(self.src, self.tgt)
        j = int(self._similar[i])
        return None if j < 0 else (self.src[i], self.tgt[j])

    def omission(self, i: int):
        parts = split_clauses(self.tgt[i])
        if len(parts) < 3:
            return None
        out = drop_clause(self.tgt[i], int(self.rng.integers(1, len(parts) - 1)))
        return (self.src[i], out) if out and out != self.tgt[i] else None

    def near_duplicate(self, i: int, copies_per_pair: int = COPIES_PER_PAIR):
        """Row i becomes an edited copy of the current reserved clean pair; when that pair has its
        copies (or no edit left), row i is reserved as the next pair (stays clean: returns None)."""
        if self._dup and self._dup[-1][1] < copies_per_pair:
            j, copies, v0 = self._dup[-1]
            for v in range(v0, v0 + 200):
                pair = (trivial_edit(self.src[j], v), trivial_edit(self.tgt[j], v))
                if pair not in self._seen:
                    self._seen.add(pair)
                    self._dup[-1] = [j, copies + 1, v + 1]
                    return pair
        self._dup.append([i, 0, 1])
        self.reserved.add(i)
        return None


def inject_noise(
    df: pd.DataFrame,
    rate: float,
    seed: int = 0,
    types: Sequence[str] = NOISE_TYPES,
    src_col: str = "src",
    tgt_col: str = "tgt",
    other_lang: Sequence[str] | None = None,
    machine_translations: Mapping[int, str] | None = None,
    own_translations: Mapping[int, str] | None = None,
) -> pd.DataFrame:
    """A copy of `df` with round(rate * len(df)) noisy rows and a `label` column.

    other_lang: sentences in a third language for `wrong_language` (default: the
    source side of other rows).  machine_translations: row position -> a system's translation of
    its source, for `machine_translated` (only rows with one can take it); own_translations: the
    same for `own_translation`, the scoring model's own output.  Types are applied
    in the order given, each to the rows the earlier ones left clean.  Raises ValueError when too few rows can take a type
    (e.g. one-word targets cannot be truncated).
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"noise rate must be in [0, 1], got {rate}")
    types = list(types)
    unknown = [t for t in types if t not in ALL_NOISE_TYPES]
    if not types or unknown or len(set(types)) != len(types):
        raise ValueError(f"noise types must be distinct names from {ALL_NOISE_TYPES}, got {types}")
    for col in (src_col, tgt_col):
        if col not in df:
            raise ValueError(f"no column {col!r} in the corpus (columns: {list(df.columns)})")
    out = df.copy().reset_index(drop=True)
    src, tgt = out[src_col].astype(str).tolist(), out[tgt_col].astype(str).tolist()
    labels = [CLEAN] * len(out)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(out))
    noiser = _Noiser(src, tgt, rng, list(other_lang) if other_lang is not None else None, machine_translations,
                     own_translations)
    new_src, new_tgt = list(src), list(tgt)
    for kind, need in noise_counts(len(out), rate, types).items():
        make = getattr(noiser, kind)
        done = 0
        for i in order:
            if done == need:
                break
            if labels[i] != CLEAN or i in noiser.reserved:
                continue
            pair = make(int(i))
            if pair is None:
                continue
            new_src[i], new_tgt[i] = pair
            labels[i] = kind
            done += 1
        if done < need:
            raise ValueError(f"noise type {kind!r}: only {done} of {need} rows could take it in this corpus")
    out[src_col], out[tgt_col], out["label"] = new_src, new_tgt, labels
    return out
