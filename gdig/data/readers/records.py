"""JSON objects and dataset rows to Rows, in one of three schemas fixed by the first object:
``pair`` (src/tgt), ``gdig`` (the reference code's src_text/trg_text with language names)
or ``hf`` (a ``translation`` dict keyed by language, direction from the caller)."""

from __future__ import annotations

from typing import Any

from gdig.data import validate as V
from gdig.data.readers.common import ReadError, Row


def detect_schema(rec: dict[str, Any]) -> str:
    if "translation" in rec:
        return "hf"
    if "src_text" in rec or "trg_text" in rec:
        return "gdig"
    return "pair"


class RecordParser:
    """Turns one JSON object / dataset row into a Row; the schema is fixed by the first object."""

    def __init__(self, path: str, schema: str | None, direction: tuple[str, str] | None):
        self.path, self.schema, self.direction = path, schema, direction

    def row(self, n: int, rec: Any, raw: str) -> Row:
        if not isinstance(rec, dict):
            return Row(self.path, n, None, None, None, None, None, raw, "row is not a JSON object")
        if self.schema is None:
            self.schema = detect_schema(rec)
        if self.schema == "hf":
            return self._hf(n, rec, raw)
        keys = ("src_text", "trg_text", "src_lang", "trg_lang") if self.schema == "gdig" else (
            "src", "tgt", "src_lang", "tgt_lang")
        out = Row(self.path, n, None, None, None, None, _label(rec.get("label")), raw)
        texts = []
        for key in keys[:2]:
            value = rec.get(key)
            if value is None:
                out.reason = out.reason or V.missing_field(key)
            elif not isinstance(value, str):
                out.reason = out.reason or V.not_a_string(key)
            texts.append(value if isinstance(value, str) else None)
        out.src, out.tgt = texts
        langs = []
        for key in keys[2:]:
            code, bad = V.norm_lang(rec.get(key))
            out.reason = out.reason or bad
            langs.append(code)
        out.src_lang, out.tgt_lang = langs
        if self.direction:  # rows without their own language fields take the caller's
            out.src_lang = out.src_lang or self.direction[0]
            out.tgt_lang = out.tgt_lang or self.direction[1]
        return out

    def _hf(self, n: int, rec: dict[str, Any], raw: str) -> Row:
        if self.direction is None:
            raise ReadError(
                f"{self.path}: Hugging Face translation rows carry both languages without a direction; "
                "give the source and target language (--src-lang/--tgt-lang, or languages: in the config)"
            )
        sl, tl = self.direction
        out = Row(self.path, n, None, None, sl, tl, _label(rec.get("label")), raw)
        tr = rec.get("translation")
        if not isinstance(tr, dict):
            out.reason = V.missing_field("translation")
            return out
        by_lang = {}
        for key, value in tr.items():
            code, bad = V.norm_lang(key)
            if bad:
                out.reason = bad
                return out
            by_lang[code] = value
        if sl not in by_lang or tl not in by_lang:
            others = [c for c in by_lang if c not in (sl, tl)]
            if others and len(by_lang) == 2:  # e.g. {"fr", "en"} where de-en is expected
                got = (sl if sl in by_lang else others[0], tl if tl in by_lang else others[-1])
                out.reason = V.wrong_pair(got, (sl, tl))
            else:
                out.reason = V.missing_field(f"translation.{sl if sl not in by_lang else tl}")
            return out
        for lang, attr in ((sl, "src"), (tl, "tgt")):
            value = by_lang[lang]
            if value is None:
                out.reason = out.reason or V.missing_field(f"translation.{lang}")
            elif not isinstance(value, str):
                out.reason = out.reason or V.not_a_string(f"translation.{lang}")
            else:
                setattr(out, attr, value)
        return out


def _label(value: Any) -> str | None:
    return None if value is None else str(value)
