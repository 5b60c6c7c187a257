"""Does the gain from seeing the source find misaligned targets that the loss misses?

    PYTHONPATH=. python benchmarks/source_gain.py --workspace WORKSPACE --scoring-id ID [--threads 2]

WORKSPACE: a `selection_quality.py --out` folder whose scoring pass is stored (ID: the scoring
id it prints).  For every scored row, one no-grad forward of the model with the source left out
of gdig's prompt template (the template with an empty `{src}`; the LM head on target positions
only) gives the target's mean cross-entropy without the source, cached in
WORKSPACE/source_free_loss.npy.  The gain is that loss minus the stored loss with the source
(nats per target token): how much the source lowers the target's cost.  A target that
translates another sentence (misaligned) or is in the wrong language gains nothing from the
source; a hard but right translation gains as much as an easy one, so the gain does not punish
rare content the way the plain loss does.

Printed: AUROC clean vs each noise type for the loss, the gain, their ratio and the loss with a
gain rule (rows whose gain is below t nats rank after the others), over the whole pool and over
the rows gdig's defaults keep (prefilter passed, closing-token loss <= 8 nats); the mean gain per
type; then quality-only and gdig at the workspace's budget, through gdig.selection.select on the
stored scores with gdig's defaults, with the rows below each gain threshold left out as the
prefilter's rejects are: noisy rows per type and clean-pool clusters touched (K = 100 and 300,
as selection_quality.py counts them).

Results, with their date, machine and settings: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import selection_quality as sq  # noqa: E402  (the workspace's data, clusters and descriptions)

GAIN_RULES = (0.25, 0.5, 1.0)  # nats per target token
# (allocation, K, within-cluster order) of gdig tried beside the defaults
GDIG_VARIANTS = (("drop_low", None, "quality"), ("size_quality", None, "quality"),
                 ("cover", 100, "quality"), ("cover", 300, "quality"), ("even", 100, "quality"))


def source_free_losses(cfg, rows: pd.DataFrame, batch_size: int) -> np.ndarray:
    """Mean target cross-entropy per row with the source left out of the prompt (no gradients)."""
    import torch

    from gdig.data.prompts import collate, encode_examples, ensure_pad_token, length_batches
    from gdig.influence.hooks import forward_loss
    from gdig.modeling import load_from_config
    from gdig.progress import track

    model, tok = load_from_config(cfg.model)
    ensure_pad_token(tok)
    sl, tl = cfg.languages.src, cfg.languages.tgt
    enc, _ = encode_examples(tok, [("", t, sl, tl) for t in rows["tgt"]], cfg.prompt.template, cfg.prompt.max_length)
    if any(e is None for e in enc):
        raise SystemExit("a target does not fit prompt.max_length even without its source")
    out = np.full(len(enc), np.nan)
    batches = length_batches([len(e.input_ids) for e in enc], batch_size)
    with torch.no_grad():
        for b in track(batches, "source-free loss", unit="batch"):
            batch = collate([enc[i] for i in b], tok.pad_token_id)
            dev = {k: v.to(cfg.model.device) for k, v in batch.items()}
            out[b] = forward_loss(model, dev["input_ids"], dev["attention_mask"], dev["labels"]).loss.cpu().numpy()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workspace", required=True)
    ap.add_argument("--scoring-id", required=True)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    import torch

    from gdig.config import parse_config
    from gdig.selection.quality import percentile_rank
    from gdig.selection.rules import passes_closing_rule
    from gdig.selection.select import select
    from gdig.store import Store

    if args.threads:
        torch.set_num_threads(args.threads)
    ws = Path(args.workspace)
    cfg = parse_config(json.loads((ws / "gdig.json").read_text()))
    with Store(cfg.workspace.db) as store:
        pool = sq.load_scored_pool(store, args.scoring_id)
    infl = pool["influence"]
    cache = ws / "source_free_loss.npy"
    if cache.exists():
        nosrc = np.load(cache)
    else:
        t0 = time.perf_counter()
        nosrc = source_free_losses(cfg, pd.DataFrame({"tgt": pool["tgt"]}), args.batch_size)
        print(f"source-free forward over {len(nosrc)} rows: {time.perf_counter() - t0:.0f} s")
        np.save(cache, nosrc)
    loss = infl["loss"].to_numpy(np.float64)
    gain = nosrc - loss
    labels, clean = pool["labels"], ~pool["noisy"]
    s = cfg.selection
    kept = pool["passed"] & passes_closing_rule(infl, s.closing_loss_max)
    scores = {"loss": -loss, "gain": gain, "loss / source-free loss": -loss / nosrc}
    for t in GAIN_RULES:
        scores[f"loss, gain >= {t:g} first"] = percentile_rank(-loss) + (gain >= t)
    for what, keep in (("the whole pool", np.ones(len(loss), bool)), ("the rows gdig's defaults keep", kept)):
        print(f"\nAUROC clean vs noisy over {what} ({int(keep.sum())} rows, {int((keep & ~clean).sum())} noisy):")
        print(sq.aurocs(pool, scores, keep).to_string(float_format=lambda x: f"{x:.3f}"))
    print("\nmean gain (nats per target token) per type: " + ", ".join(
        f"{k} {gain[labels == k].mean():.2f}" for k in sorted(set(labels))))

    budget = s.budgets[0]
    parts = {k: sq.clean_clusters(pool, k) for k in sq.COVERAGE_K}
    common = {"gamma": s.gamma, "quality": s.quality, "closing_loss_max": s.closing_loss_max, "seed": s.seed}
    runs = {"quality-only": ("quality", {})}
    for alloc, k, within in GDIG_VARIANTS:
        runs[f"gdig {alloc}" + (f" K={k}" if k else "")] = (
            "gdig", {"allocation": alloc, "n_clusters": k, "within_cluster": within, "drop_margin": s.drop_margin})
    pos_to_row = {p: i for i, p in enumerate(infl["position"])}
    rows = {}
    for t in (None, *GAIN_RULES[:2]):
        cand = np.flatnonzero(pool["passed"] & (True if t is None else gain >= t))
        for name, (strategy, kw) in runs.items():
            sel = select(strategy, budget, infl.iloc[cand].reset_index(drop=True), pool["sketches"][cand],
                         {**common, **kw}, n_seed_groups=pool["matrix"].shape[1])
            d = sq.describe(pool, sel.rows["position"].map(pos_to_row).to_numpy(), parts)
            d["|D_hq|"] = sel.n_high_quality
            rows[f"{name}, " + ("no gain rule" if t is None else f"gain >= {t:g}")] = d
    print(f"\nselections at budget {budget} (prefilter and gdig's defaults; rows below the gain threshold left out):")
    print(pd.DataFrame(rows).T.to_string(float_format=lambda x: f"{x:.4g}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
