"""Injection of the classic parallel-data noise types into any corpus, each row labelled.

Types (the usual suspects of web-crawled parallel data):
- misaligned: the target of another row
- untranslated: the target is a copy of the source
- wrong_language: the target is text in another language (the source side of another
  row, or a sentence from a caller-given pool of other-language text)
- truncated: the target is cut to a prefix
- shuffled: the target's words in a shuffled order
- fragment: both sides cut to short, unaligned fragments of one or two words

Exactly round(rate * n) rows become noisy, split as evenly as possible across the
types (the first types in `types` take the remainder); deterministic for a seed.
A noisy row always differs from its clean version.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd

NOISE_TYPES = ("misaligned", "untranslated", "wrong_language", "truncated", "shuffled", "fragment")
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


class _Noiser:
    def __init__(self, src: list[str], tgt: list[str], rng: np.random.Generator, other: list[str] | None):
        self.src, self.tgt, self.rng, self.other = src, tgt, rng, other

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


def inject_noise(
    df: pd.DataFrame,
    rate: float,
    seed: int = 0,
    types: Sequence[str] = NOISE_TYPES,
    src_col: str = "src",
    tgt_col: str = "tgt",
    other_lang: Sequence[str] | None = None,
) -> pd.DataFrame:
    """A copy of `df` with round(rate * len(df)) noisy rows and a `label` column.

    other_lang: sentences in a third language for `wrong_language` (default: the
    source side of other rows).  Raises ValueError when too few rows can take a type
    (e.g. one-word targets cannot be truncated).
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"noise rate must be in [0, 1], got {rate}")
    types = list(types)
    unknown = [t for t in types if t not in NOISE_TYPES]
    if not types or unknown or len(set(types)) != len(types):
        raise ValueError(f"noise types must be distinct names from {NOISE_TYPES}, got {types}")
    for col in (src_col, tgt_col):
        if col not in df:
            raise ValueError(f"no column {col!r} in the corpus (columns: {list(df.columns)})")
    out = df.copy().reset_index(drop=True)
    src, tgt = out[src_col].astype(str).tolist(), out[tgt_col].astype(str).tolist()
    labels = [CLEAN] * len(out)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(out))
    noiser = _Noiser(src, tgt, rng, list(other_lang) if other_lang is not None else None)
    new_src, new_tgt = list(src), list(tgt)
    for kind, need in noise_counts(len(out), rate, types).items():
        make = getattr(noiser, kind)
        done = 0
        for i in order:
            if done == need:
                break
            if labels[i] != CLEAN:
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
