"""Language codes: everything is normalised to ISO 639-1 (or the given code when it has none)."""

from __future__ import annotations

from gdig.errors import BadInput

# ISO 639-1 code -> English name.  The demo's invented pair uses codes outside ISO 639-1.
NAMES: dict[str, str] = {
    "ar": "Arabic", "bg": "Bulgarian", "bn": "Bengali", "ca": "Catalan", "cs": "Czech",
    "da": "Danish", "de": "German", "el": "Greek", "en": "English", "es": "Spanish",
    "et": "Estonian", "fa": "Persian", "fi": "Finnish", "fr": "French", "gu": "Gujarati",
    "ha": "Hausa", "he": "Hebrew", "hi": "Hindi", "hr": "Croatian", "hu": "Hungarian",
    "id": "Indonesian", "is": "Icelandic", "it": "Italian", "ja": "Japanese", "kk": "Kazakh",
    "km": "Khmer", "ko": "Korean", "lt": "Lithuanian", "lv": "Latvian", "ms": "Malay",
    "nl": "Dutch", "no": "Norwegian", "pl": "Polish", "ps": "Pashto", "pt": "Portuguese",
    "ro": "Romanian", "ru": "Russian", "sk": "Slovak", "sl": "Slovenian", "sr": "Serbian",
    "sv": "Swedish", "sw": "Swahili", "ta": "Tamil", "th": "Thai", "tr": "Turkish",
    "uk": "Ukrainian", "ur": "Urdu", "vi": "Vietnamese", "xh": "Xhosa", "zh": "Chinese",
    "zu": "Zulu",
    # the demo's invented languages (see gdig.demo.corpus)
    "xa": "Aldric", "xb": "Borish",
}

# ISO 639-2/3 codes and other common spellings
ALIASES: dict[str, str] = {
    "deu": "de", "ger": "de", "eng": "en", "fra": "fr", "fre": "fr", "spa": "es", "zho": "zh",
    "chi": "zh", "cmn": "zh", "jpn": "ja", "rus": "ru", "ces": "cs", "cze": "cs", "ukr": "uk",
    "por": "pt", "ita": "it", "nld": "nl", "dut": "nl", "pol": "pl", "tur": "tr", "ara": "ar",
    "kor": "ko", "heb": "he", "hin": "hi", "isl": "is", "ice": "is", "fin": "fi", "est": "et",
    "lit": "lt", "lav": "lv", "ron": "ro", "rum": "ro", "kaz": "kk", "guj": "gu", "tam": "ta",
    "khm": "km", "pus": "ps", "hau": "ha", "nob": "no", "nb": "no", "zh-cn": "zh", "zh-tw": "zh",
    "zh_cn": "zh", "zh_tw": "zh", "pt-br": "pt", "pt_br": "pt", "en-us": "en", "en-gb": "en",
}

_BY_NAME = {name.lower(): code for code, name in NAMES.items()}
_BY_NAME.update({"mandarin": "zh", "farsi": "fa", "czech": "cs", "norwegian bokmal": "no"})


class UnknownLanguage(BadInput, ValueError):
    pass


def normalize_lang(value: str) -> str:
    """'German', 'deu', 'DE', 'de-DE' -> 'de'.  Unknown values raise UnknownLanguage."""
    if not isinstance(value, str) or not value.strip():
        raise UnknownLanguage(f"empty language code: {value!r}")
    v = value.strip().lower()
    if v in NAMES:
        return v
    if v in ALIASES:
        return ALIASES[v]
    if v in _BY_NAME:
        return _BY_NAME[v]
    base = v.replace("_", "-").split("-")[0]
    if base in NAMES:
        return base
    if base in ALIASES:
        return ALIASES[base]
    raise UnknownLanguage(f"unknown language {value!r} (use an ISO 639-1 code like 'de' or a name like 'German')")


def lang_name(code: str) -> str:
    """English name of a normalised code, for prompts."""
    return NAMES.get(code, code)
