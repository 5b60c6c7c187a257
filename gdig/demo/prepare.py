"""The offline demo workspace: invented language pair, noisy pool, tiny model built from scratch.

`prepare_demo(workdir)` writes the corpus (gdig.demo.corpus, 30% injected noise), builds a
tiny Llama-style model with a BPE tokenizer trained on the demo texts, gives it a short
"pretraining" (translation finetuning on a separate CLEAN general corpus of the pair, so
the base model can already translate a little and the selection experiments measure what
the selected data adds), and writes the demo config.  Then `run_pipeline` (or the `run`
flow) on that config selects, finetunes and evaluates G-DIG against the baselines.

Every step is reused when already done (same files, same finished training run).
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path

import yaml

from gdig.demo.settings import demo_config_template, demo_settings


def _say(progress: bool, msg: str) -> None:
    if progress:
        print(msg, flush=True)


@contextmanager
def _timed(timings: dict[str, float], step: str):
    t0 = time.perf_counter()
    yield
    timings[step] = time.perf_counter() - t0


def prepare_demo(workdir: str | Path, seed: int = 0, progress: bool = True, *,
                 demo_overrides: dict | None = None) -> Path:
    """Build the demo workspace in `workdir`; returns the path of its config (workdir/gdig.yaml).

    seed: corpus and model-init seed.  demo_overrides: keys of the config's `demo:` section
    (corpus sizes, tiny-model sizes, pretrain_steps) to change, e.g. for a smaller test run.
    Writes data/{pool,seed,eval,general}.jsonl, models/init (random tiny model), models/base
    (after the short pretraining) and prepare_timings.json (seconds per step).
    """
    from gdig.demo.corpus import write_demo_data

    work = Path(workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    data = demo_config_template()
    knobs = demo_settings(demo_overrides)
    data["demo"] = {**knobs, "seed": seed}
    _refuse_other_settings(work, data["demo"])
    timings: dict[str, float] = {}

    with _timed(timings, "data"):
        files = write_demo_data(work / "data", n_pool=knobs["n_pool"], n_seed=knobs["n_seed"],
                                n_eval=knobs["n_eval"], n_general=knobs["n_general"],
                                noise_rate=knobs["noise_rate"], seed=seed)
    _say(progress, f"demo data: {', '.join(f'{k} {v}' for k, v in files.items())}")

    init_dir, base_dir = work / "models" / "init", work / "models" / "base"
    with _timed(timings, "build_model"):
        if not (init_dir / "config.json").exists():
            _build_tiny_model(init_dir, files, data["prompt"], knobs, seed)
    with _timed(timings, "pretrain"):
        if knobs["pretrain_steps"] > 0:
            _pretrain(init_dir, base_dir, files["general"], data["prompt"], knobs, seed, progress)
    data["model"]["name_or_path"] = "models/base" if knobs["pretrain_steps"] > 0 else "models/init"

    path = _write_config(work, data)
    (work / "prepare_timings.json").write_text(json.dumps(timings, indent=1))
    return path


def _refuse_other_settings(work: Path, demo: dict) -> None:
    """A workdir is reused only with the settings it was built with: its model, tokenizer and
    store would otherwise keep the old sizes while the data files took the new ones."""
    from gdig.config import ConfigError

    path = work / "gdig.yaml"
    if not path.is_file():
        return
    before = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("demo") or {}
    changed = sorted(k for k in demo if k in before and before[k] != demo[k])
    if changed:
        diff = ", ".join(f"{k} {before[k]} -> {demo[k]}" for k in changed)
        raise ConfigError(f"{work}: a demo workspace built with other settings ({diff}); "
                          f"use a new --workdir, or delete this one")


def _build_tiny_model(init_dir: Path, files: dict[str, Path], prompt: dict, knobs: dict, seed: int) -> None:
    """A randomly initialised tiny Llama with a BPE tokenizer trained on the demo texts."""
    from gdig.data.prompts import build_prompt
    from gdig.demo.corpus import SRC_LANG, TGT_LANG
    from gdig.modeling import build_tiny_model
    from gdig.train import load_training_frame

    texts = []
    for name in ("general", "pool", "seed"):  # the eval set stays unseen by the tokenizer too
        df = load_training_frame(files[name], SRC_LANG, TGT_LANG)
        texts += list(df["src"]) + list(df["tgt"])
    texts += [build_prompt(prompt["template"], "", SRC_LANG, TGT_LANG)] * 20
    build_tiny_model(texts, init_dir, arch="llama", vocab_size=knobs["vocab_size"], hidden=knobs["hidden"],
                     layers=knobs["layers"], heads=knobs["heads"], intermediate=knobs["intermediate"],
                     max_positions=max(256, prompt["max_length"]), seed=seed)


def _pretrain(init_dir: Path, base_dir: Path, general: Path, prompt: dict, knobs: dict, seed: int,
              progress: bool) -> None:
    """The short pretraining on clean general pairs, so that the base model already translates
    a little (reused when finished, resumed when interrupted)."""
    from gdig.config import ModelConfig, PromptConfig, TrainConfig
    from gdig.demo.corpus import SRC_LANG, TGT_LANG
    from gdig.train import finetune

    _say(progress, f"pretraining the tiny model on {knobs['n_general']} clean general pairs "
                   f"({knobs['pretrain_steps']} steps)")
    tc = TrainConfig(max_steps=knobs["pretrain_steps"], batch_size=knobs["pretrain_batch_size"],
                     lr=knobs["pretrain_lr"], scheduler="cosine", warmup_ratio=0.05, seed=seed,
                     save_every=max(50, knobs["pretrain_steps"] // 4))
    finetune(ModelConfig(name_or_path=str(init_dir)), PromptConfig(**prompt), tc, general, base_dir,
             progress=progress, desc="pretrain", src_lang=SRC_LANG, tgt_lang=TGT_LANG)


def _write_config(work: Path, data: dict) -> Path:
    """workdir/gdig.yaml, validated first (a bad demo config fails here, not in a later stage)."""
    from gdig.config import parse_config

    parse_config(json.loads(json.dumps(data)), source="demo config", base_dir=work)
    path = work / "gdig.yaml"
    header = "# gdig demo workspace (written by gdig.demo.prepare_demo); paths are relative to this file\n"
    path.write_text(header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path
