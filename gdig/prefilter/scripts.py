"""Which writing system(s) a language is written in, and how much of a text uses them.

Only languages listed here get the script check; any other language (an invented demo
pair, a rare language) is left unjudged rather than guessed at.
"""

from __future__ import annotations

import numpy as np

from gdig.prefilter.charclass import LETTER, Codepoints, table

# ISO 639-1 code -> Unicode scripts (names as the `regex` module spells them)
_CYRILLIC = ("ru", "uk", "be", "bg", "mk", "kk", "ky", "mn", "tg", "tt", "ba", "cv", "ce", "os")
_LATIN = (
    "af", "az", "br", "bs", "ca", "cs", "cy", "da", "de", "en", "eo", "es", "et", "eu", "fi", "fil",
    "fo", "fr", "fy", "ga", "gd", "gl", "ha", "hr", "ht", "hu", "id", "ig", "is", "it", "jv", "la",
    "lb", "lt", "lv", "mg", "ms", "mt", "nb", "nl", "nn", "no", "oc", "pl", "pt", "qu", "rm", "ro",
    "sk", "sl", "so", "sq", "su", "sv", "sw", "tk", "tl", "tr", "uz", "vi", "wo", "xh", "yo", "zu",
)
SCRIPTS: dict[str, tuple[str, ...]] = {
    **{lang: ("Latin",) for lang in _LATIN},
    **{lang: ("Cyrillic",) for lang in _CYRILLIC},
    "sr": ("Cyrillic", "Latin"),  # written in both
    "el": ("Greek",),
    "ar": ("Arabic",), "fa": ("Arabic",), "ur": ("Arabic",), "ps": ("Arabic",), "ug": ("Arabic",),
    "ckb": ("Arabic",), "sd": ("Arabic",),
    "he": ("Hebrew",), "yi": ("Hebrew",),
    "zh": ("Han", "Bopomofo"),
    "ja": ("Han", "Hiragana", "Katakana"),
    "ko": ("Hangul", "Han"),
    "hi": ("Devanagari",), "mr": ("Devanagari",), "ne": ("Devanagari",), "sa": ("Devanagari",),
    "bn": ("Bengali",), "as": ("Bengali",),
    "pa": ("Gurmukhi",), "gu": ("Gujarati",), "or": ("Oriya",),
    "ta": ("Tamil",), "te": ("Telugu",), "kn": ("Kannada",), "ml": ("Malayalam",), "si": ("Sinhala",),
    "th": ("Thai",), "lo": ("Lao",), "km": ("Khmer",), "my": ("Myanmar",), "bo": ("Tibetan",),
    "ka": ("Georgian",), "hy": ("Armenian",), "am": ("Ethiopic",), "ti": ("Ethiopic",),
    "dv": ("Thaana",),
}

# languages written without spaces between words: word counts mean nothing for them
NO_SPACES = frozenset({"zh", "ja", "th", "lo", "km", "my", "bo"})
# languages whose characters stand for syllables or words: their character counts do not
# compare with an alphabet's (Korean has spaces, but a Hangul block is a whole syllable)
DENSE = NO_SPACES | {"ko"}


def _script_class(lang: str) -> str | None:
    scripts = SCRIPTS.get(lang)
    if scripts is None:
        return None
    return "[" + "".join(rf"\p{{Script={s}}}" for s in scripts) + "]"


def script_fraction(texts: list[str], lang: str, cps: Codepoints | None = None) -> np.ndarray:
    """Per text: letters in `lang`'s script(s) / all letters.

    1.0 for a text without letters (nothing contradicts it), NaN for every text when
    the language's script is unknown.
    """
    pattern = _script_class(lang)
    if pattern is None:
        return np.full(len(texts), np.nan)
    cps = cps or Codepoints(texts)
    letters = table(LETTER)
    inside = cps.count(table(pattern) & letters)
    total = cps.count(letters)
    return np.divide(inside, total, out=np.ones_like(total), where=total > 0)
