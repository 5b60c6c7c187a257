"""Which writing system(s) a language is written in, and how much of a text uses them.

Only languages listed here get the script check; any other language (an invented demo
pair, a rare language) is left unjudged rather than guessed at.  Shares are of script-
normalised letters (gdig.prefilter.lengths): a Latin name, number or unit inside Chinese,
Japanese, Cyrillic, Arabic or Devanagari text weighs what it weighs in a translation.
"""

from __future__ import annotations

import numpy as np

from gdig.prefilter.charclass import LETTER, LETTER_OR_MARK, Codepoints, table
from gdig.prefilter.lengths import weights

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

# languages written without spaces between words: their word counts are normalised lengths
NO_SPACES = frozenset({"zh", "ja", "th", "lo", "km", "my", "bo"})

# languages a script tells apart by itself, where language ID on short segments is weak
# (benchmarks/README.md, "Language ID on Chinese, Japanese, Korean"): language -> (scripts that
# make up at least half of the letters, scripts of which some letter must be there, scripts
# of which none may be there)
SCRIPT_EVIDENCE: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "zh": (("Han",), ("Han",), ("Hiragana", "Katakana", "Hangul")),
    "ja": (("Han", "Hiragana", "Katakana"), ("Hiragana", "Katakana"), ("Hangul",)),
    "ko": (("Hangul",), ("Hangul",), ()),
}


def _script_class(lang: str) -> str | None:
    scripts = SCRIPTS.get(lang)
    if scripts is None:
        return None
    return _class(scripts)


def _class(scripts) -> str:
    return "[" + "".join(rf"\p{{Script={s}}}" for s in scripts) + "]"


def _weighed(cps: Codepoints, scripts) -> np.ndarray:
    """Per text: script-normalised letters (and marks) in `scripts`."""
    return cps.weigh(weights() * (table(_class(scripts)) & table(LETTER_OR_MARK)))


def script_fraction(texts: list[str], lang: str, cps: Codepoints | None = None) -> np.ndarray:
    """Per text: script-normalised letters in `lang`'s script(s) / all of them.

    1.0 for a text without letters (nothing contradicts it), NaN for every text when
    the language's script is unknown.
    """
    pattern = _script_class(lang)
    if pattern is None:
        return np.full(len(texts), np.nan)
    cps = cps or Codepoints(texts)
    letters = weights() * table(LETTER)
    inside = cps.weigh(letters * table(pattern))
    total = cps.weigh(letters)
    return np.divide(inside, total, out=np.ones_like(total), where=total > 0)


def script_says(texts: list[str], lang: str, cps: Codepoints | None = None) -> np.ndarray:
    """Per text: True where its scripts alone show it is in `lang` (SCRIPT_EVIDENCE); all False
    for a language without such evidence."""
    if lang not in SCRIPT_EVIDENCE:
        return np.zeros(len(texts), dtype=bool)
    most, some, none = SCRIPT_EVIDENCE[lang]
    cps = cps or Codepoints(texts)
    total = cps.weigh(weights() * table(LETTER))
    ok = (_weighed(cps, most) >= 0.5 * total) & (_weighed(cps, some) > 0)
    if none:
        ok &= _weighed(cps, none) == 0
    return ok
