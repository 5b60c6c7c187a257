"""Can any cheap signal see an omitted clause?  AUROC per noise type of the signals that look at
what the target leaves out of the source.

    PYTHONPATH=. python benchmarks/omission_signals.py --out runs/cs-en-600 [--out runs/zh-en-600]

OUT: a `selection_quality.py --hidden-noise` folder (its labelled pool in OUT/data/pool.jsonl and
its model in OUT/model: Gemma 3 270M's GGUF file, or with --model tiny the tiny model's folder).  Per pool row, two no-grad passes through gdig's prompt
template and `gdig.evaluate.target_nll` (cached in OUT/omission-signals.npz):

- forward loss: mean cross-entropy of the target given the source (the model's own loss);
- reverse loss: of the source given the target, the languages swapped. A target that drops a
  clause leaves that clause of the source unexplained, so it should cost more;
- dual conditional cross-entropy (Junczys-Dowmunt, WMT 2018): |forward − reverse| + their mean;
- length ratio: log(target characters / source characters); an omission shortens the target;
- length deviation: |ratio − the pool's median ratio| in units of its median absolute deviation.

Printed: AUROC clean vs each noise type (higher: clean rows ranked above that type) per signal;
then the length ratio as a rule: the share of clean rows and of each type whose ratio lies more
than k median absolute deviations below the pool's median.
Results, with date, machine and settings: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

RULE_KS = (1.5, 2.0, 2.5, 3.0)  # median absolute deviations
TYPES = ("omission", "machine_translated", "hard_misaligned", "near_duplicate", "misaligned", "truncated")


def load_pool(out: Path) -> pd.DataFrame:
    rows = [json.loads(x) for x in (out / "data" / "pool.jsonl").read_text(encoding="utf-8").splitlines() if x.strip()]
    df = pd.DataFrame(rows)
    df["label"] = df["label"].fillna("clean") if "label" in df else "clean"
    return df


def model_source(out: Path) -> dict:
    """The model selection_quality.py left in OUT/model: its GGUF file (--model gemma), else its
    tiny model's folder (--model tiny)."""
    gguf = sorted((out / "model").glob("*.gguf"))
    if gguf:
        return {"name_or_path": str(gguf[0].parent), "gguf_file": gguf[0].name}
    if (out / "model" / "tiny" / "config.json").exists():
        return {"name_or_path": str(out / "model" / "tiny")}
    raise SystemExit(f"{out / 'model'}: no *.gguf file and no tiny/ model (run selection_quality.py with this --out)")


def mean_losses(out: Path, pool: pd.DataFrame, device: str, dtype: str) -> dict[str, np.ndarray]:
    """Mean target NLL per row, source → target and target → source (cached per pool file)."""
    import hashlib

    from gdig.config import ModelConfig, PromptConfig
    from gdig.evaluate import target_nll
    from gdig.modeling import load_from_config

    key = hashlib.sha256((out / "data" / "pool.jsonl").read_bytes()).hexdigest()[:16]
    cache = out / "omission-signals.npz"
    if cache.exists():
        saved = np.load(cache)
        if str(saved["key"]) == key:
            return {"forward": saved["forward"], "reverse": saved["reverse"]}
    model, tok = load_from_config(ModelConfig(**model_source(out), device=device, dtype=dtype))
    template = PromptConfig().template
    swapped = pool.rename(columns={"src": "tgt", "tgt": "src", "src_lang": "tgt_lang", "tgt_lang": "src_lang"})
    res = {}
    for name, rows in (("forward", pool), ("reverse", swapped)):
        nll = target_nll(model, tok, rows, template, max_length=512, too_long="truncate_target", batch_size=8,
                         device=device)
        res[name] = (nll["nll"] / nll["target_tokens"].clip(lower=1)).to_numpy(np.float64)
    np.savez(cache, key=key, **res)
    return res


def length_z(pool: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """log(target / source characters) per row, and its distance from the pool's median in
    median absolute deviations (signed: negative = a shorter target than the pair's usual)."""
    ratio = np.log((pool["tgt"].str.len() + 1) / (pool["src"].str.len() + 1)).to_numpy()
    med = np.median(ratio)
    return ratio, (ratio - med) / (np.median(np.abs(ratio - med)) * 1.4826)


def signals(pool: pd.DataFrame, loss: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each signal oriented so that higher means cleaner."""
    ratio, z = length_z(pool)
    fwd, rev = loss["forward"], loss["reverse"]
    return {"forward loss": -fwd, "reverse loss": -rev,
            "dual conditional cross-entropy": -(np.abs(fwd - rev) + 0.5 * (fwd + rev)),
            "length ratio": ratio, "length deviation": -np.abs(z)}


def length_rule_table(pool: pd.DataFrame) -> pd.DataFrame:
    """The length ratio as a rule: the share of each label flagged when a target's ratio lies
    more than k median absolute deviations below the pool's median."""
    _, z = length_z(pool)
    lab = pool["label"].to_numpy()
    return pd.DataFrame({f"k={k}": {t: 100 * float((z[lab == t] < -k).mean()) for t in ("clean",) + TYPES
                                    if (lab == t).any()} for k in RULE_KS}).T


def auroc_table(pool: pd.DataFrame, sig: dict[str, np.ndarray]) -> pd.DataFrame:
    from sklearn.metrics import roc_auc_score

    lab = pool["label"].to_numpy()
    out = {}
    for name, s in sig.items():
        row = {"overall": roc_auc_score(lab == "clean", s)}
        for t in TYPES:
            keep = (lab == "clean") | (lab == t)
            if (lab == t).any():
                row[t] = roc_auc_score(lab[keep] == "clean", s[keep])
        out[name] = row
    return pd.DataFrame(out).T


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", action="append", required=True, help="a selection_quality.py --hidden-noise folder")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    args = ap.parse_args()
    for out in map(Path, args.out):
        pool = load_pool(out)
        table = auroc_table(pool, signals(pool, mean_losses(out, pool, args.device, args.dtype)))
        print(f"\n== {out}: {len(pool)} rows, AUROC clean vs each type (higher: clean ranked above it) ==")
        print(table.to_string(float_format=lambda x: f"{x:.3f}"))
        print("\nthe length ratio as a rule: % of each label flagged, ratio more than k MADs below the pool's median")
        print(length_rule_table(pool).to_string(float_format=lambda x: f"{x:.1f}"))


if __name__ == "__main__":
    main()
