"""Per-text measurements the rules share: lengths, normalised text, letter shares, repeats."""

from __future__ import annotations

import numpy as np

from gdig.prefilter.charclass import LETTER_OR_MARK, SPACE, Codepoints, not_word_translation, table


def char_lengths(texts: list[str]) -> np.ndarray:
    return np.array([len(t.strip()) for t in texts], dtype=np.float64)


# sentence-final punctuation of many scripts, and what may close after it (quotes, brackets)
_FINAL = frozenset(".!?。！？｡．…।॥۔؟።")
_CLOSERS = "\"'”’»›」』）)]】〕〉》 \t\u3000"


def closes(text: str) -> bool:
    """Does the text end a sentence (its last character, closing quotes and brackets aside)?"""
    text = text.rstrip().rstrip(_CLOSERS)
    return bool(text) and text[-1] in _FINAL


def word_counts(texts: list[str]) -> np.ndarray:
    return np.array([len(t.split()) for t in texts], dtype=np.float64)


def normalise_for_copy(text: str) -> str:
    """Casefolded words only: "Hello, World 2024!" -> "hello world"."""
    return " ".join(text.casefold().translate(not_word_translation()).split())


def non_alpha_fraction(texts: list[str], cps: Codepoints | None = None) -> np.ndarray:
    """Per text: share of non-space characters that are not letters (or combining marks); 0 when empty."""
    cps = cps or Codepoints(texts)
    visible = cps.lengths - cps.count(table(SPACE))
    letters = cps.count(table(LETTER_OR_MARK))
    return np.divide(visible - letters, visible, out=np.zeros_like(letters), where=visible > 0)


def longest_token_run(texts: list[str]) -> np.ndarray:
    """Per text: the longest run of one (casefolded) token repeated back to back."""
    out = np.zeros(len(texts), dtype=np.float64)
    for i, t in enumerate(texts):
        best = run = 0
        prev = None
        for tok in t.casefold().split():
            run = run + 1 if tok == prev else 1
            best = max(best, run)
            prev = tok
        out[i] = best
    return out
