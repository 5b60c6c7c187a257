"""Does a strong system's machine translation hurt a finetune at all?  The oracle clean rows vs the
same rows with their targets swapped for one published system's output, each finetuned by gdig.

The rows: --rows sentences of one pair of wmt22-system-outputs (source, human reference), drawn
at random, none of them in the base config's eval or seed sets.  Two pools are written: `oracle`
(the human references) and `swapped-SYSTEM` (the same sources, SYSTEM's output as target).  Each is
a variant of the base config (a selection_quality.py OUT/configs/base.yaml, so the model, the test
slice and the finetune settings are that benchmark's) in which the pool is selected whole
(strategy random at budget --rows, no prefilter: both finetune on the same sources); `gdig run`'s
proof runs once per finetune seed, and the table gives the oracle's chrF/BLEU/NLL margin over the
swapped rows with a paired-bootstrap 95% interval over test rows and finetune seeds
(selection_quality.downstream).

    python benchmarks/mt_swap.py --base runs/cs-en-600/configs/base.yaml \\
        --systems DATA/wmt22-system-outputs/cs-en --system WMT_Winners --rows 150 \\
        --out runs/mt-swap-cs-en --finetune-seeds 0,1,2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from selection_quality import MAX_WORDS, _write_jsonl, downstream  # noqa: E402


def read_jsonl_sources(paths: list[str]) -> set[str]:
    out: set[str] = set()
    for p in paths:
        out |= set(pd.read_json(p, lines=True)["src"].str.strip())
    return out


def swap_rows(systems: Path, pair: str, system: str, rows: int, exclude: set[str], seed: int) -> pd.DataFrame:
    """--rows (src, reference, system output) of the pair's test sentences, drawn at random: none
    whose source is in `exclude`, longer than MAX_WORDS words, or whose output is empty or a copy
    of the source (that would be an untranslated row, not MT)."""
    src = pair.split("-")[0]
    read = lambda name: (systems / name).read_text(encoding="utf-8").splitlines()  # noqa: E731
    df = pd.DataFrame({"src": read(f"source.{src}"), "ref": read("reference.en"), "mt": read(f"{system}.en")})
    if not (len(df["src"]) == len(df["ref"]) == len(df["mt"])):
        raise SystemExit(f"{systems}: source, reference and {system} differ in length")
    words = lambda s: s.str.split().str.len()  # noqa: E731
    keep = (~df["src"].str.strip().isin(exclude) & (df["mt"].str.strip() != "")
            & (df["mt"].str.strip() != df["src"].str.strip()) & (df["ref"].str.strip() != "")
            & (words(df["src"]) <= MAX_WORDS) & (words(df["ref"]) <= MAX_WORDS) & (words(df["mt"]) <= MAX_WORDS))
    df = df[keep]
    if len(df) < rows:
        raise SystemExit(f"{systems}: {len(df)} usable rows, need --rows {rows}")
    return df.sample(n=rows, random_state=seed).reset_index(drop=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, type=Path, help="a selection_quality.py OUT/configs/base.yaml")
    ap.add_argument("--systems", required=True, type=Path, help="one pair's folder of wmt22-system-outputs")
    ap.add_argument("--system", default="WMT_Winners", help="the system whose output replaces the targets")
    ap.add_argument("--rows", type=int, default=150)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--seed", type=int, default=0, help="the draw of the rows")
    ap.add_argument("--finetune-seeds", default="0,1,2")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override of both variants' config; repeatable")
    args = ap.parse_args()

    from gdig.config import apply_overrides
    from gdig.store import Store

    base = yaml.safe_load(args.base.read_text(encoding="utf-8"))
    src, tgt = base["languages"]["src"], base["languages"]["tgt"]
    out = args.out.resolve()
    (out / "data").mkdir(parents=True, exist_ok=True)
    (out / "configs").mkdir(parents=True, exist_ok=True)
    held = [e["path"] for e in base["data"].get("eval", [])] + [e["path"] for e in base["data"]["seed"]]
    rows = swap_rows(args.systems, f"{src}-{tgt}", args.system, args.rows, read_jsonl_sources(held), args.seed)
    swapped = f"swapped-{args.system}"
    pools = {"oracle": rows.assign(tgt=rows["ref"]), swapped: rows.assign(tgt=rows["mt"])}
    paths = {}
    for name, df in pools.items():
        pool = _write_jsonl(df[["src", "tgt"]], out / "data" / f"{name}.jsonl", src, tgt)
        cfg = apply_overrides(base, [
            f"workspace.db={out / 'gdig.duckdb'}", f"workspace.dir={out / 'artifacts'}",
            "prefilter.enabled=false", "pool_finetune.enabled=false",  # the pool is taken whole: no scoring choice
            "selection.strategies=[random]", f"selection.budgets=[{args.rows}]", *args.overrides])
        cfg["data"]["candidates"] = [{"path": str(pool)}]
        paths[name] = out / "configs" / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    same_ref = (rows["mt"].str.strip() == rows["ref"].str.strip()).sum()
    print(f"{args.rows} rows of {args.systems.name} ({args.system}'s output identical to the reference on "
          f"{same_ref}); configs: {', '.join(str(p) for p in paths.values())}", flush=True)
    ns = SimpleNamespace(downstream=f"oracle/random,{swapped}/random", finetune_seeds=args.finetune_seeds,
                         bootstrap=args.bootstrap)
    with Store(out / "gdig.duckdb") as store:
        df = downstream(ns, paths, store, evaluate_base=False)
    df.to_csv(out / "mt_swap.csv")
    print(f"\noracle vs the same rows with {args.system}'s output as target (finetune seeds "
          f"{args.finetune_seeds}; margins of oracle, positive: the references are better; 95% intervals over "
          f"test rows and finetune seeds, {args.bootstrap} resamples):")
    print(df.to_string(float_format=lambda x: f"{x:.3f}"))


if __name__ == "__main__":
    main()
