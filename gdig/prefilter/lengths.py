"""Lengths that mean the same in every script: script-normalised characters and words.

A character of Chinese carries what about three letters of an English translation carry, a
kana or a Hangul syllable two or three; counting them as one letter each makes every length
bound and ratio a statement about Latin text.  Here every letter, combining mark or digit
weighs what it stands for in Latin letters (`WEIGHTS`), spaces, punctuation and symbols weigh
nothing, so the length of a side is comparable across scripts and within a side that mixes
them (a Latin name inside Chinese text).  The weights are round figures: the Han one is the
median English letters per Han character of a human-translated zh-en corpus (3.3); what a
pair's own ratio really is, the ratio rule learns from the pool.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from gdig.prefilter.charclass import LETTER_OR_MARK, Codepoints, table

# Latin letters per character, by script (everything else that is a letter, mark or digit: 1)
WEIGHTS: dict[str, float] = {"Han": 3.0, "Hiragana": 2.0, "Katakana": 2.0, "Hangul": 2.5, "Bopomofo": 1.0}
LETTERS_PER_WORD = 5.0  # an English word, space included, is about five letters: words where no spaces
_COUNTED = r"[\p{L}\p{M}\p{N}]"


@lru_cache(maxsize=1)
def weights() -> np.ndarray:
    """Float table over all code points: a character's weight in Latin letters (0: not counted)."""
    out = table(_COUNTED).astype(np.float64)
    for script, w in WEIGHTS.items():
        out[table(rf"\p{{Script={script}}}") & table(LETTER_OR_MARK)] = w
    return out


def normalised_length(texts: list[str], cps: Codepoints | None = None) -> np.ndarray:
    """Per text: its letters, marks and digits, each weighed in Latin letters."""
    return (cps or Codepoints(texts)).weigh(weights())
