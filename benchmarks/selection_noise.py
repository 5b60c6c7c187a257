"""Does the G-DIG quality score find injected noise?  And does diversity spread the selection?

Demo corpus (Aldric -> Borish) with `--noise` of the pool corrupted (six noise types, each row
labelled), a tiny Llama-style model (tokenizer trained on the demo text) trained from scratch
on the noisy pool (pool_finetune, step 1 of the method), then `select_pipeline`:
K-FAC/EK-FAC curvature, seed products, scoring, and the gdig / quality / random / diversity
selections at each budget.  Prints the pipeline summary plus:

- AUROC of the quality score (clean = positive; 0.5 = random, 1.0 = perfect separation),
- per budget and strategy: share of clean rows kept and, per noise type, rows kept,
- clusters covered by gdig vs quality-only on the same partition (gdig's K-means of D_hq).

Run:  python benchmarks/selection_noise.py [--pool 1000 --seeds 60 --budgets 200 400 --gamma 0.9]
Everything lives under --out (default: a temp dir); re-running with the same --out reuses
the trained model, curvature, products and score shards (so trying another --gamma is quick).

Results, with their date, machine and settings: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


STRATEGIES = ["gdig", "quality", "random", "diversity"]


def demo_setup(args, out: Path):
    """`gdig demo`'s workspace: tiny model pretrained briefly on clean text, 1 epoch on the pool."""
    from gdig.config import load_config
    from gdig.demo import prepare_demo

    cfg_path = out / "gdig.yaml"
    if not cfg_path.exists():
        prepare_demo(out, seed=args.seed, demo_overrides={"n_pool": args.pool, "n_seed": args.seeds,
                                                           "noise_rate": args.noise})
    sets = [f"selection.strategies=[{','.join(STRATEGIES)}]", f"selection.budgets={args.budgets}",
            f"selection.gamma={args.gamma}", f"selection.seed={args.seed}"]
    return load_config(cfg_path, sets)


def scratch_setup(args, out: Path):
    """A tiny model trained from scratch on the noisy pool only (long default prompt)."""
    from gdig.config import parse_config
    from gdig.demo import generate_pairs, write_demo_data
    from gdig.modeling import build_tiny_model

    files = write_demo_data(out / "data", n_pool=args.pool, n_seed=args.seeds, n_eval=10, n_general=10,
                            noise_rate=args.noise, seed=args.seed)
    model_dir = out / "tiny-model"
    if not (model_dir / "config.json").exists():
        pairs = generate_pairs(2000, seed=args.seed + 1000)  # tokenizer text: the language, not the pool
        texts = list(pairs["src"]) + list(pairs["tgt"]) + ["Translate the following Aldric text into Borish."] * 50
        build_tiny_model(texts, model_dir, arch="llama", hidden=args.hidden, layers=args.layers,
                         intermediate=4 * args.hidden, vocab_size=512, pad_token=False, seed=args.seed)
    return parse_config({
        "workspace": {"db": str(out / "gdig.duckdb"), "dir": str(out / "artifacts")},
        "languages": {"src": "xa", "tgt": "xb"},
        "data": {"candidates": [{"path": str(files["pool"])}], "seed": [{"path": str(files["seed"])}]},
        "model": {"name_or_path": str(model_dir)},
        "prompt": {"max_length": 192},
        "pool_finetune": {"enabled": True, "epochs": args.epochs, "batch_size": 16, "lr": args.lr,
                          "warmup_ratio": 0.05, "scheduler": "cosine", "seed": args.seed},
        "influence": {
            "curvature": {"strategy": args.curvature, "batch_size": 16},
            "seed_set": {"batch_size": args.seed_batch},
            "scoring": {"batch_size": 32, "shard_size": 1000},
        },
        "selection": {"budgets": args.budgets, "strategies": STRATEGIES, "gamma": args.gamma, "seed": args.seed},
    })


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--setup", default="demo", choices=["demo", "scratch"],
                    help="demo: gdig demo's workspace (pretrained tiny model, 1 pool epoch); scratch: a tiny "
                         "model trained from scratch on the pool for --epochs.")
    ap.add_argument("--out", default=None, help="Working directory (default: a new temp dir).")
    ap.add_argument("--pool", type=int, default=1000, help="Candidate pool size.")
    ap.add_argument("--seeds", type=int, default=60, help="Clean seed examples.")
    ap.add_argument("--noise", type=float, default=0.3, help="Fraction of the pool made noisy.")
    ap.add_argument("--budgets", type=int, nargs="+", default=[200, 400])
    ap.add_argument("--gamma", type=float, default=0.9, help="Eq. 4 helped-fraction threshold.")
    ap.add_argument("--epochs", type=float, default=6.0, help="Pool finetuning epochs of the tiny model.")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--curvature", default="ekfac", choices=["kfac", "ekfac"])
    ap.add_argument("--seed-batch", type=int, default=1, help="Seeds averaged per product (reference: 2).")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="Also write the summary as JSON here.")
    args = ap.parse_args()

    from gdig.pipeline import select_pipeline
    from gdig.selection.diversity import cluster_sketches
    from gdig.selection.quality import rank_by_quality
    from gdig.selection.summary import evenness
    from gdig.store import Store

    out = Path(args.out or tempfile.mkdtemp(prefix="gdig-noise-"))
    out.mkdir(parents=True, exist_ok=True)
    if args.setup == "demo":
        cfg = demo_setup(args, out)
    else:
        cfg = scratch_setup(args, out)
    t0 = time.time()
    summary = select_pipeline(cfg, progress=True)
    elapsed = time.time() - t0
    print()
    print(summary.render())
    print()
    print(f"pipeline time: {elapsed:.0f} s (pool {args.pool}, seeds {args.seeds}, noise {args.noise:.0%})")
    print("AUROC of the quality score, clean vs noisy: " + ", ".join(f"{k} {v:.3f}" for k, v in summary.auroc.items()))
    with Store(cfg.workspace.db, read_only=True) as store:
        infl = store.influence(summary.scoring_id)
        sk_ids, X = store.sketches(summary.scoring_id)
        picked = {(r.strategy, r.budget): list(store.selection(r.selection_id)["example_id"])
                  for r in summary.selections}
    # a finer, strategy-neutral partition: K-means over the whole pool with K = budget / 4
    row_of = {e: i for i, e in enumerate(sk_ids)}
    fine = {}
    for b in args.budgets:
        part = cluster_sketches(X, max(2, b // 4), normalize=True, seed=args.seed)
        fine[b] = (part.labels, part.n_clusters)
    sizes = {g: int(rank_by_quality(infl, g)["high_quality"].sum()) for g in (1.0, 0.95, 0.9, 0.8, 0.7, 0.6, 0.5)}
    print("|D_hq| by gamma: " + ", ".join(f"{g:g}: {n}" for g, n in sizes.items()))
    by = {(r.strategy, r.budget): r for r in summary.selections}
    types = sorted(summary.noise_types)
    for b in args.budgets:
        print(f"\nbudget {b}: share kept per noise type (pool count in brackets); clean share of the selection")
        print(f"  {'strategy':<10} {'clean':>6}  " + "  ".join(f"{t}({summary.noise_types[t]})" for t in types))
        for s in ("gdig", "quality", "random", "diversity"):
            r = by[(s, b)]
            kept = "  ".join(f"{r.noise['per_type'][t]['n_selected'] / r.noise['per_type'][t]['n_pool']:>{len(t) + 2 + len(str(summary.noise_types[t]))}.2f}" for t in types)
            print(f"  {s:<10} {r.noise['selected_clean_fraction']:>6.1%}  {kept}")
        g, q = by[("gdig", b)], by[("quality", b)]
        print(f"  gdig partition (K-means of D_hq, K={g.clusters_total}): covered / evenness  " + ", ".join(
            f"{st} {by[(st, b)].clusters_covered} / {by[(st, b)].cluster_evenness or float('nan'):.3f}"
            for st in ("gdig", "quality", "random", "diversity")))
        labels, k = fine[b]
        cov = {st: labels[[row_of[e] for e in picked[(st, b)]]] for st in ("gdig", "quality", "random", "diversity")}
        print(f"  fine pool partition (K-means of all sketches, K={k}): covered / evenness  " + ", ".join(
            f"{st} {len(np.unique(v))} / {evenness(v, k):.3f}" for st, v in cov.items()))
    if args.json:
        Path(args.json).write_text(json.dumps(summary.to_dict(), indent=2, default=str))
    print(f"\nworkspace: {out}")


if __name__ == "__main__":
    main()
