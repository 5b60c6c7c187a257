"""Does the loss on a target's closing EOS token find truncated targets that pass the prefilter?

    PYTHONPATH=. python benchmarks/closing_token_loss.py --pool WORKSPACE/data/pool.jsonl
        (--gguf GGUF | --model-dir DIR) [--clean 300] [--batch-size 8]
    PYTHONPATH=. python benchmarks/closing_token_loss.py --workspace WORKSPACE [--variant defaults]

--pool: a labelled gdig JSONL pool (src, tgt, src_lang, tgt_lang, label = clean or a noise type),
as ``selection_quality.py`` writes it into its workspace.  The rows that pass gdig's default
prefilter are taken: --clean clean ones drawn at random (seed 0), and every truncated and
misaligned one (the two noise types the prefilter lets through most).  One forward pass of the
model (no gradients) over them with gdig's default prompt template gives, per row, the mean
cross-entropy over its target tokens (gdig's loss) and the cross-entropy of the EOS token that
encode_examples appends to every target.  A truncated target stops mid-sentence, so a model
that knows the language puts little mass on stopping there; the mean over the target's tokens
does not see that (a prefix of a good translation has a low mean loss).

Printed: AUROC clean vs each type for -mean loss, -EOS loss and two blends, the median EOS loss
per class, and the share of each class above EOS-loss thresholds (a rule like the copy rule).

--workspace (a selection_quality.py --out folder): the closing-token loss gdig stored with the
scoring of --variant's config (OUT/configs/VARIANT.yaml; the rows that pass its prefilter), its
AUROC against the mean loss's, then that config's selections re-run through gdig's stage graph
(gdig.graph.select; the scoring is cached) with `selection.closing_loss_max` off and at each
threshold: the rows each threshold leaves out per label, and each selection's noisy rows per type.

Results, with their date, machine and settings: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

TYPES = ("truncated", "misaligned")
THRESHOLDS = (6.0, 8.0, 10.0)


def read_pool(path: str) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            r = json.loads(line)
            missing = [k for k in ("src", "tgt", "src_lang", "tgt_lang", "label") if k not in r]
            if missing:
                raise SystemExit(f"{path}, row {n}: missing {missing} (a labelled pool needs src, tgt, "
                                 f"src_lang, tgt_lang, label)")
            rows.append(r)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--pool", help="a labelled pool JSONL: a probe on a sample of its rows")
    what.add_argument("--workspace", help="a selection_quality.py --out folder: its stored scoring, and its selections")
    ap.add_argument("--variant", default="defaults",
                    help="with --workspace: the selection_quality.py variant whose config is re-run (OUT/configs/VARIANT.yaml)")
    model = ap.add_mutually_exclusive_group()
    model.add_argument("--gguf", help="with --pool: the Gemma 3 270M GGUF file (selection_quality.py --model gemma writes it to OUT/model/gemma3-270m-q4_k_m.gguf from the .[bench] extra)")
    model.add_argument("--model-dir", help="with --pool: a Hugging Face model folder instead (e.g. selection_quality.py --model tiny's OUT/model/tiny)")
    ap.add_argument("--clean", type=int, default=300, help="clean rows drawn (all noisy rows of TYPES are kept)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.workspace:
        return workspace_mode(args)
    if not (args.gguf or args.model_dir):
        ap.error("--pool needs the model: --gguf FILE or --model-dir DIR")

    from pathlib import Path

    import numpy as np
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from gdig.config import PrefilterConfig
    from gdig.modeling import load_model
    from gdig.prefilter.decisions import prefilter_rows

    rows = read_pool(args.pool)
    df = pd.DataFrame(rows)
    df["example_id"] = range(len(df))
    pairs = df[["src_lang", "tgt_lang"]].drop_duplicates()
    if len(pairs) != 1:
        raise SystemExit(f"{args.pool}: one language pair expected, found {len(pairs)}")
    sl, tl = pairs.iloc[0]
    df["passed"] = prefilter_rows(df, PrefilterConfig(), sl, tl)["passed"].to_numpy()
    passing = df[df.passed]
    clean = passing.index[passing.label == "clean"].tolist()
    pick = random.Random(0).sample(clean, min(args.clean, len(clean)))
    pick += passing.index[passing.label.isin(TYPES)].tolist()
    print(f"{args.pool}: {len(df)} rows, passing the prefilter: "
          + ", ".join(f"{k} {v}" for k, v in passing.label.value_counts().items()), flush=True)

    if args.gguf:
        gguf = Path(args.gguf)
        model, tok = load_model(str(gguf.parent), gguf_file=gguf.name, device=args.device)
    else:
        model, tok = load_model(args.model_dir, device=args.device)
    t0 = time.time()
    mean_l, eos_l = target_losses(model, tok, [(df.src[i], df.tgt[i], sl, tl) for i in pick], args.batch_size,
                                  args.device, mean=True)
    print(f"forward over {int((~np.isnan(eos_l)).sum())} rows: {time.time() - t0:.0f} s", flush=True)

    label = df.label.to_numpy()[pick]
    ok = ~np.isnan(mean_l)
    scores = {"mean loss": mean_l, "EOS loss": eos_l, "mean + EOS/8": mean_l + eos_l / 8,
              "mean + EOS/4": mean_l + eos_l / 4}
    for t in TYPES:
        sel = ok & ((label == "clean") | (label == t))
        y = (label[sel] == "clean").astype(int)
        if y.min() == y.max():
            print(f"{t}: no rows of this type pass the prefilter")
            continue
        print(f"{t:10s} AUROC (clean vs {t}) " + ", ".join(f"by -{n}: {roc_auc_score(y, -s[sel]):.3f}"
                                                     for n, s in scores.items()))
    print("median EOS loss (nats): " + ", ".join(f"{k} {np.median(eos_l[ok & (label == k)]):.2f}"
                                                 for k in ("clean",) + TYPES if (ok & (label == k)).any()))
    for th in THRESHOLDS:
        print(f"EOS loss > {th:g}: " + ", ".join(f"{k} {100 * np.mean(eos_l[ok & (label == k)] > th):.1f}%"
                                                for k in ("clean",) + TYPES if (ok & (label == k)).any()))
    return 0


def target_losses(model, tok, rows: list[tuple[str, str, str, str]], batch_size: int, device: str,
                  mean: bool = True):
    """(mean cross-entropy over each row's target tokens, or None without ``mean``; cross-entropy
    of its closing EOS token), NaN for a row encode_examples skips.  The LM head runs only on the
    positions needed: every target position, or without ``mean`` the EOS-predicting one."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from gdig.config import DEFAULT_TEMPLATE
    from gdig.data.prompts import IGNORE, collate, encode_examples, length_batches
    from gdig.progress import track

    enc, _ = encode_examples(tok, rows, DEFAULT_TEMPLATE, 256)
    mean_l, eos_l = np.full(len(rows), np.nan), np.full(len(rows), np.nan)
    keep = [j for j, e in enumerate(enc) if e is not None]
    plan = length_batches([len(enc[j].input_ids) for j in keep], batch_size)
    with torch.no_grad():
        for b in track(plan, "target losses", unit="batch", total=len(plan)):
            idx = [keep[k] for k in b]
            bt = {k: v.to(device) for k, v in collate([enc[j] for j in idx], tok.pad_token_id).items()}
            target = bt["labels"][:, 1:]
            is_target = target != IGNORE
            at = torch.zeros_like(bt["labels"], dtype=torch.bool)  # positions whose logits are needed
            if mean:
                at[:, :-1] = is_target
            else:  # each row's last target position: its appended EOS
                at[torch.arange(len(idx), device=at.device), is_target.long().cumsum(1).argmax(1)] = True
            logits = model(input_ids=bt["input_ids"], attention_mask=bt["attention_mask"], use_cache=False,
                           logits_to_keep=at).logits
            if logits.dim() != 2:  # a model without the mask form of logits_to_keep
                logits = logits[:, :-1][at[:, :-1]]
            ce = F.cross_entropy(logits.float(), target[at[:, :-1]], reduction="none")  # kept positions, row-major
            counts = at.sum(1)
            eos_l[idx] = ce[counts.cumsum(0) - 1].cpu().numpy()  # a row's last kept position is its EOS
            if mean:
                row = torch.arange(len(idx), device=ce.device).repeat_interleave(counts)
                mean_l[idx] = (torch.zeros(len(idx), device=ce.device).index_add(0, row, ce) / counts).cpu().numpy()
    return (mean_l if mean else None), eos_l


def workspace_mode(args) -> int:
    """The stored closing-token loss of a selection_quality.py workspace's scoring, and the
    variant's selections re-run through gdig's stage graph with selection.closing_loss_max off
    and at each threshold (the scoring is cached: only the selections run)."""
    from pathlib import Path

    import numpy as np
    import pandas as pd

    from gdig import graph
    from gdig.config import load_config
    from gdig.pipeline import PlainExecutor
    from gdig.selection.metrics import auroc_by_type, is_noisy
    from gdig.store import Store

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import selection_quality as sq

    ws = Path(args.workspace)
    path = ws / "configs" / f"{args.variant}.yaml"
    if not path.is_file():
        raise SystemExit(f"{path}: no such variant config (run selection_quality.py --variants {args.variant} "
                         f"with --out {ws})")
    rows = {}
    with Store(ws / "gdig.duckdb") as store:
        labels = store.dataset_examples("pool")["label"]
        types = sorted({str(t) for t, bad in zip(labels, is_noisy(labels)) if bad})
        for th in (None,) + THRESHOLDS:
            cfg = load_config(path, [f"selection.closing_loss_max={'null' if th is None else th}"])
            result = graph.select(PlainExecutor(cfg, store, progress=False))
            if th is None:  # the stored losses of the rows this variant scores (those that pass its prefilter)
                infl = store.influence(result["scoring"]["scoring_id"])
                lab = infl["label"].fillna("clean").to_numpy()
                eos, loss = infl["closing_loss"].to_numpy(np.float64), infl["loss"].to_numpy(np.float64)
                print(f"{args.variant}: scoring {result['scoring']['scoring_id']}, {len(infl)} rows; AUROC clean vs "
                      f"noisy (overall and per type) of the closing-token loss and the mean loss:")
                print(auroc_by_type({"-EOS loss": -eos, "-mean loss": -loss}, lab).to_string(
                    float_format=lambda x: f"{x:.3f}"))
            else:
                left = eos > th
                print(f"EOS loss > {th:g} nats leaves out {int(left.sum())} rows" + "".join(
                    f", {t} {int((lab[left] == t).sum())}" for t in ["clean"] + types if (lab[left] == t).any()))
            tag = "off" if th is None else f"{th:g}"
            rows.update(sq.selection_rows(store, f"closing rule {tag}", result, types))
    table = pd.DataFrame(rows).T
    print(f"\nselections at the budget (RULE/STRATEGY: {path} with selection.closing_loss_max off or at a threshold):")
    print(table.to_string(float_format=lambda x: f"{x:.4g}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
