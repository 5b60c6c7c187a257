"""How much injected noise does the prefilter remove, how many clean rows does it cost, how fast?

The cs-en pool (train.cs-en.{cs,en}, 12,076 human-translated pairs) with 35% noise injected by
gdig.data.noise.inject_noise (its six types, the wrong-language targets drawn from the Russian
side of valid.ru-en.json), judged by gdig.prefilter.prefilter_rows under the default config
(or --set overrides); --wrong-language pool takes them from the Czech sources of other rows
instead (the same script as English: a job for language ID alone).  Prints:

- per check: the share of each noise type's rows it fails and the share of clean rows it
  fails, each check on its own (a row can fail several);
- the verdict (first failing check): rows removed per noise type, clean rows rejected;
- throughput: pairs per second of CPU time and of wall time, on one core, after warm-up
  (the one-time cost of loading the language-ID model and the character tables is printed
  apart).

Run:  python benchmarks/prefilter_quality.py --data DATA [--rate 0.35] [--seed 0]
      [--wrong-language pool] [--set langid.min_prob=0.2 ...] [--show RULE] (clean rows a check rejects)

Results, with their date, machine and settings: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
import yaml

from gdig.config import PrefilterConfig
from gdig.data.noise import CLEAN, NOISE_TYPES, inject_noise
from gdig.prefilter import CHECK_NAMES, CHECKS, prefilter_rows

TARGETS = {"untranslated": 0.95, "wrong_language": 0.95, "fragment": 0.80}
MAX_CLEAN_REJECTS = 0.02


def load_pool(data: Path, rate: float, seed: int, wrong_language: str) -> pd.DataFrame:
    cs = (data / "train.cs-en.cs").read_text(encoding="utf-8").splitlines()
    en = (data / "train.cs-en.en").read_text(encoding="utf-8").splitlines()
    ru = [r["translation"]["ru"] for r in json.loads((data / "valid.ru-en.json").read_text(encoding="utf-8"))]
    # "pool": inject_noise's own default, the Czech source of another row (same script as English)
    other = ru if wrong_language == "ru" else None
    pool = inject_noise(pd.DataFrame({"src": cs, "tgt": en}), rate, seed=seed, other_lang=other)
    pool.insert(0, "example_id", [f"r{i}" for i in range(len(pool))])
    return pool


def config(overrides: list[str]) -> PrefilterConfig:
    data: dict = {}
    for item in overrides:
        key, raw = item.split("=", 1)
        node = data
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(raw)
    return PrefilterConfig.model_validate(data)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="the alma-cs-en folder (train.cs-en.{cs,en}, valid.ru-en.json); benchmarks/README.md says where the data comes from and how to lay it out")
    ap.add_argument("--rate", type=float, default=0.35)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--wrong-language", choices=["ru", "pool"], default="ru",
                    help="wrong-language targets: Russian sentences, or Czech sources of other rows")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="prefilter key=value")
    ap.add_argument("--show", help="print up to 10 clean rows this check fails")
    args = ap.parse_args()
    cfg = config(args.overrides)
    pool = load_pool(args.data, args.rate, args.seed, args.wrong_language)

    t0 = time.perf_counter()
    prefilter_rows(pool.head(20), cfg, "cs", "en")  # warm-up: model and character tables
    warm_s = time.perf_counter() - t0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    dec = prefilter_rows(pool, cfg, "cs", "en")
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    labels = pool["label"].to_numpy()
    kinds = [t for t in NOISE_TYPES if (labels == t).any()]
    clean = labels == CLEAN

    print(f"pool: {len(pool)} rows, {int((~clean).sum())} noisy ({args.rate:.0%}), {int(clean.sum())} clean")
    head = f"{'check':18s}" + "".join(f"{k[:12]:>13s}" for k in kinds) + f"{'clean rej':>11s}"
    print("\nshare of rows each check fails, on its own:")
    print(head)
    for check in CHECKS:
        # a disabled rule's figures are NaN, and NaN never fails
        fails = check.fails(dec[check.name].to_numpy(), getattr(cfg, check.section))
        name = check.name
        row = "".join(f"{fails[labels == k].mean():13.1%}" for k in kinds)
        print(f"{name:18s}{row}{fails[clean].mean():11.2%}")
    removed = ~dec["passed"].to_numpy()
    print("\nverdict (first failing check):")
    print(head)
    print(f"{'removed':18s}" + "".join(f"{removed[labels == k].mean():13.1%}" for k in kinds)
          + f"{removed[clean].mean():11.2%}")
    print("\nrejections by rule (first failing check) and label:")
    table = pd.crosstab(dec.loc[removed, "rule"], labels[removed])
    print(table.reindex([c for c in CHECK_NAMES if c in table.index]).to_string())
    print(f"\nthroughput: {len(pool) / cpu:,.0f} pairs/s of CPU time, {len(pool) / wall:,.0f} pairs/s wall "
          f"({len(pool)} pairs in {cpu:.2f} s CPU / {wall:.2f} s wall; one-time load {warm_s:.2f} s)")
    ok = all(removed[labels == k].mean() >= v for k, v in TARGETS.items() if k in kinds)
    ok &= removed[clean].mean() <= MAX_CLEAN_REJECTS
    print("targets (>=95% untranslated and wrong_language, >=80% fragment, <=2% clean): "
          + ("met" if ok else "NOT met"))
    if args.show:
        bad = dec[clean & (dec["rule"] == args.show).to_numpy()].head(10)
        for _, r in bad.iterrows():
            p = pool.loc[pool["example_id"] == r["example_id"]].iloc[0]
            print(f"  {r['figure']:.3f} | {p['src'][:100]!r} | {p['tgt'][:100]!r}")



if __name__ == "__main__":
    main()
