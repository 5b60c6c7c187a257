"""Does the gain from seeing the source find misaligned targets that the loss misses?

    PYTHONPATH=. python benchmarks/source_gain.py --workspace OUT [--variant defaults] [--thresholds 0.25,0.5,1]

OUT: a `selection_quality.py --out` folder.  The config of --variant (OUT/configs/VARIANT.yaml) is
run through gdig's stage graph (gdig.graph.select; its scoring is cached in the workspace) with
`selection.source_gain_min` off and at each threshold.  The rule's source-free-loss stage gives,
per scored row (the rows that pass the variant's prefilter), the target's mean cross-entropy with
the source left out of the prompt; the gain is that loss minus the loss with the source (nats per
target token).  A target that translates another sentence (misaligned) or is in the wrong
language gains nothing from the source; a hard but right translation gains as much as an easy
one, so the gain does not punish rare content the way the plain loss does.

Printed: AUROC clean vs each noise type (gdig.selection.metrics) of the loss, the gain, their
ratio and the loss with the rows of gain < t ranked last, over the scored rows and over those
that also pass the closing-token rule; the mean gain per type; then the variant's selections at
each threshold (noisy rows per type, γ, |D_hq|): each row is `gdig select OUT/configs/VARIANT.yaml
--set selection.source_gain_min=T`.

Results, with their date, machine and settings: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import selection_quality as sq  # noqa: E402  (the composition of a variant's selections)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workspace", required=True, help="a selection_quality.py --out folder")
    ap.add_argument("--variant", default="defaults", help="the variant whose config is run (OUT/configs/VARIANT.yaml)")
    ap.add_argument("--thresholds", default="0.25,0.5,1.0", help="selection.source_gain_min values (nats per token)")
    args = ap.parse_args()

    from gdig import graph
    from gdig.config import load_config
    from gdig.pipeline import PlainExecutor
    from gdig.selection.metrics import auroc_by_type, is_noisy, ranked_last
    from gdig.selection.outputs import with_source_free
    from gdig.selection.rules import passes_closing_rule, source_gain
    from gdig.store import Store

    ws = Path(args.workspace)
    path = ws / "configs" / f"{args.variant}.yaml"
    if not path.is_file():
        raise SystemExit(f"{path}: no such variant config (run selection_quality.py --variants {args.variant} "
                         f"with --out {ws})")
    thresholds = [float(t) for t in args.thresholds.split(",")]
    rows, gain = {}, None
    with Store(ws / "gdig.duckdb") as store:
        labels = store.dataset_examples("pool")["label"]
        types = sorted({str(t) for t, bad in zip(labels, is_noisy(labels)) if bad})
        for t in (None, *thresholds):
            cfg = load_config(path, [f"selection.source_gain_min={'null' if t is None else t}"])
            result = graph.select(PlainExecutor(cfg, store, progress=False))
            rows.update(sq.selection_rows(store, "no gain rule" if t is None else f"gain >= {t:g}", result, types))
            if gain is None and result["source_free"] is not None:  # the losses are the same at every threshold
                infl = with_source_free(store, store.influence(result["scoring"]["scoring_id"]), result["source_free"])
                gain, loss = source_gain(infl), infl["loss"].to_numpy(np.float64)
                lab = infl["label"].fillna("clean").to_numpy()
                closing_ok = passes_closing_rule(infl, cfg.selection.closing_loss_max)
                closing_max = cfg.selection.closing_loss_max
    scores = {"loss": -loss, "gain": gain, "loss / source-free loss": -loss / (loss + gain)}
    for t in thresholds:
        scores[f"loss, gain < {t:g} last"] = ranked_last(-loss, gain < t)
    for what, keep in ((f"the rows {args.variant} scores", np.ones(len(lab), bool)),
                       (f"those that pass the closing-token rule ({closing_max} nats)", closing_ok)):
        print(f"\nAUROC clean vs noisy over {what} ({int(keep.sum())} rows, {int((keep & (lab != 'clean')).sum())} noisy):")
        print(auroc_by_type(scores, lab, keep).to_string(float_format=lambda x: f"{x:.3f}"))
    print("\nmean gain (nats per target token) per type: " + ", ".join(
        f"{k} {gain[lab == k].mean():.2f}" for k in sorted(set(lab))))
    print(f"\nselections at the budget (RULE/STRATEGY: {path} with selection.source_gain_min off or at a threshold):")
    print(pd.DataFrame(rows).T.to_string(float_format=lambda x: f"{x:.4g}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
