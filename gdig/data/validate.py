"""Row and file checks for ingestion.  Every problem is a short, stable reason string.

Reasons are grouped and counted in the ingest summary and stored verbatim in the
`rejects` table, so keep them short and free of row-specific detail where a count
per reason should group them (the raw row text is stored beside the reason).
"""

from __future__ import annotations

import unicodedata

from gdig.data.languages import UnknownLanguage, normalize_lang

EMPTY_SOURCE = "empty source"
EMPTY_TARGET = "empty target"
INVALID_UTF8 = "invalid utf-8"
CONTROL_CHARS = "control characters"
EMPTY_FILE = "empty file"

# characters allowed although Unicode calls them control characters
_ALLOWED_CONTROLS = {"\t", "\n", "\r"}


def missing_field(name: str) -> str:
    return f"missing field {name!r}"


def not_a_string(name: str) -> str:
    return f"field {name!r} is not a string"


def wrong_pair(got: tuple[str, str], expected: tuple[str, str]) -> str:
    return f"wrong language pair {got[0]}-{got[1]} (expected {expected[0]}-{expected[1]})"


def unknown_language(value: object) -> str:
    return f"unknown language {value!r}"


def not_format(what: str, suffix: str) -> str:
    """A file whose content is not what its extension says, e.g. not valid JSON (file says .jsonl)."""
    return f"not valid {what} (file says {suffix or 'no extension'})"


def wrong_columns(found: int, expected: int = 2) -> str:
    return f"expected {expected} tab-separated columns, found {found}"


def decode_line(data: bytes) -> tuple[str, str | None]:
    """Decode one line of a file: (text, reason).  Invalid UTF-8 keeps the bytes visible."""
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        return data.decode("utf-8", errors="backslashreplace"), INVALID_UTF8


def split_lines(data: bytes) -> list[bytes]:
    """Lines of a file as bytes (\\n or \\r\\n endings; a final newline ends the last line).

    Only newline splits: str.splitlines would also split on \\x1c, \\x85, \\u2028,
    which must be reported as control characters instead of silently cutting a row.
    """
    if data.startswith(b"\xef\xbb\xbf"):  # UTF-8 BOM
        data = data[3:]
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [ln[:-1] if ln.endswith(b"\r") else ln for ln in lines]


def has_control_chars(text: str) -> bool:
    return any(
        unicodedata.category(ch) == "Cc" and ch not in _ALLOWED_CONTROLS for ch in text
    )


def looks_binary(head: bytes) -> bool:
    """NUL bytes or a compression magic number: not a text file at all."""
    return b"\x00" in head or head.startswith((b"\x1f\x8b", b"PK\x03\x04", b"BZh", b"\xfd7zXZ"))


def norm_lang(value: object) -> tuple[str | None, str | None]:
    """(code, reason): a language field of a row normalised, or why it cannot be."""
    if value is None:
        return None, None
    if not isinstance(value, str):
        return None, unknown_language(value)
    try:
        return normalize_lang(value), None
    except UnknownLanguage:
        return None, unknown_language(value)


def too_long(side: str, n: int, limit: int) -> str:
    return f"{side} is {n} characters > max_chars {limit}"


def check_text(src: str, tgt: str, max_chars: int | None = None) -> str | None:
    """Content checks on one pair; None when the pair is fine.  max_chars: the longest source or
    target accepted (None: no limit)."""
    if not src.strip():
        return EMPTY_SOURCE
    if not tgt.strip():
        return EMPTY_TARGET
    if max_chars is not None:
        for side, text in (("source", src), ("target", tgt)):
            if len(text) > max_chars:
                return too_long(side, len(text), max_chars)
    if has_control_chars(src) or has_control_chars(tgt):
        return CONTROL_CHARS
    return None


def check_pair(got: tuple[str | None, str | None], expected: tuple[str, str]) -> str | None:
    """A row's own language fields against the pair the dataset is for."""
    src, tgt = got
    if (src is not None and src != expected[0]) or (tgt is not None and tgt != expected[1]):
        return wrong_pair((src or expected[0], tgt or expected[1]), expected)
    return None
