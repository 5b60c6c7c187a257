"""Instruction finetuning of a causal LM for translation (full or LoRA), resumable and seeded.

One plain torch loop.  The data order is a pure function of (seed, micro-batch index):
examples are grouped into length buckets (gdig.data.prompts.length_batches) and the bucket
order is reshuffled each epoch with a generator seeded by (seed, epoch).  So a run that
crashed resumes from its last saved step with nothing but the step counter, and ends with
the same weights as an uninterrupted run (model, optimizer, scheduler and RNG states are
restored from ``<out>/resume/state.pt``).

The loss is the target-only token mean over a whole optimizer step (all micro-batches of
the gradient accumulation together), so grad_accum=2 x batch 4 equals batch 8.

Output directory of a finished run: a plain ``save_pretrained`` model + tokenizer (LoRA:
adapters merged into the base weights, so every other stage loads it like any model; the
unmerged adapter is kept in ``<out>/adapter``) and ``gdig_train.json`` (the done marker).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import shutil
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from gdig.config import GdigConfig, ModelConfig, PromptConfig, TrainConfig
from gdig.data.prompts import IGNORE, EncodeReport, Encoded, collate, encode_examples, length_batches
from gdig.target_loss import SplitHead, split_head, target_loss_backward
from gdig import faults
from gdig.workspace import Workspace, atomic_file, json_hash

DONE_FILE = "gdig_train.json"
RESUME_DIR = "resume"
_TRAIN_FIELDS = set(TrainConfig.model_fields)


class TrainError(RuntimeError):
    pass


@dataclass
class TrainResult:
    path: str
    steps: int
    n_examples: int
    losses: list[float] = field(default_factory=list)  # mean target-token loss per optimizer step
    resumed_from: int = 0  # step the run resumed from (0: fresh)
    reused: bool = False  # a finished run with the same fingerprint was found
    encode_summary: str = "all rows fit"
    seconds: float = 0.0


# -- data -------------------------------------------------------------------------------------

def load_training_frame(data: Any, src_lang: str | None = None, tgt_lang: str | None = None) -> pd.DataFrame:
    """A DataFrame (src, tgt, src_lang, tgt_lang) from a DataFrame, a list of dicts or a JSONL path.

    Rows without src_lang/tgt_lang take the given defaults; a row missing text is an error
    that names the file and line.
    """
    if isinstance(data, (str, Path)):
        path = Path(data)
        if not path.is_file():
            raise TrainError(f"{path}: training file not found")
        rows = []
        with open(path, encoding="utf-8") as fh:
            for i, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as err:
                    raise TrainError(f"{path}:{i}: not valid JSON ({err})") from None
                if not isinstance(obj, dict):
                    raise TrainError(f"{path}:{i}: expected a JSON object with src and tgt")
                obj["_where"] = f"{path}:{i}"
                rows.append(obj)
        df = pd.DataFrame(rows)
    elif isinstance(data, pd.DataFrame):
        df = data.copy()
    else:
        df = pd.DataFrame(list(data))
    if len(df) == 0:
        raise TrainError("no training examples")
    if "_where" not in df:
        df["_where"] = [f"row {i}" for i in range(len(df))]
    for col, default in (("src_lang", src_lang), ("tgt_lang", tgt_lang)):
        if col not in df:
            df[col] = default
        df[col] = df[col].where(df[col].notna(), default)
    for col in ("src", "tgt", "src_lang", "tgt_lang"):
        if col not in df:
            raise TrainError(f"training data has no {col!r} column (columns: {', '.join(map(str, df.columns))})")
        bad = df[col].isna() | (df[col].astype(str).str.strip() == "")
        if bad.any():
            raise TrainError(f"{df.loc[bad, '_where'].iloc[0]}: empty or missing {col!r}")
    return df.reset_index(drop=True)


ENCODE_CHUNK = 10_000  # rows tokenised at a time: a pool's token lists never exist all at once


class PackedEncoded:
    """Encoded rows kept in flat int32 arrays (ids, labels) with offsets, about 8 bytes a token
    where Python lists of ints take about 70; row i comes back as the Encoded it was."""

    def __init__(self, chunks: list[list[Encoded]]):
        rows = [e for c in chunks for e in c]
        lengths = np.fromiter((len(e.input_ids) for e in rows), dtype=np.int64, count=len(rows))
        self.offsets = np.concatenate([[0], np.cumsum(lengths)])
        self.ids = np.fromiter((t for e in rows for t in e.input_ids), dtype=np.int32, count=int(self.offsets[-1]))
        self.labels = np.fromiter((t for e in rows for t in e.labels), dtype=np.int32, count=int(self.offsets[-1]))
        self.prompt_len = np.fromiter((e.prompt_len for e in rows), dtype=np.int32, count=len(rows))
        self.truncated = np.fromiter((e.truncated for e in rows), dtype=bool, count=len(rows))

    @classmethod
    def concat(cls, parts: list["PackedEncoded"]) -> "PackedEncoded":
        out = cls([])
        lengths = np.concatenate([np.diff(p.offsets) for p in parts]) if parts else np.zeros(0, np.int64)
        out.offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        for name in ("ids", "labels", "prompt_len", "truncated"):
            setattr(out, name, np.concatenate([getattr(p, name) for p in parts]) if parts else getattr(out, name))
        return out

    def __len__(self) -> int:
        return len(self.prompt_len)

    def __getitem__(self, i: int) -> Encoded:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i %= len(self)
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return Encoded(self.ids[a:b].tolist(), self.labels[a:b].tolist(), int(self.prompt_len[i]),
                       bool(self.truncated[i]))

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def lengths(self) -> list[int]:
        return np.diff(self.offsets).tolist()


def encode_frame(tokenizer, df: pd.DataFrame, prompt: PromptConfig) -> tuple[PackedEncoded, str]:
    """Encode rows with the project prompt, ENCODE_CHUNK rows at a time into a PackedEncoded;
    returns (encoded rows, what the length policy did)."""
    parts, report = [], EncodeReport()
    for start in range(0, len(df), ENCODE_CHUNK):
        part = df.iloc[start:start + ENCODE_CHUNK]
        rows = zip(part["src"], part["tgt"], part["src_lang"], part["tgt_lang"])
        enc, rep = encode_examples(tokenizer, rows, prompt.template, prompt.max_length, prompt.too_long)
        report.truncated += [start + i for i in rep.truncated]
        report.skipped += [(start + i, why) for i, why in rep.skipped]
        parts.append(PackedEncoded([[e for e in enc if e is not None]]))
    kept = PackedEncoded.concat(parts)
    if report.skipped or report.truncated:
        warnings.warn(f"training data: {report.summary()}", stacklevel=2)
    if not len(kept):
        raise TrainError(f"no training example fits prompt.max_length={prompt.max_length}: {report.summary()}")
    return kept, report.summary()


def tokens_hash(encoded) -> str:
    """json_hash([e.input_ids + e.labels for e in encoded], None), one row at a time (the same
    digest without the whole JSON text in memory)."""
    h = hashlib.sha256(b"[")
    for i, e in enumerate(encoded):
        if i:
            h.update(b", ")
        h.update(json.dumps(e.input_ids + e.labels).encode("utf-8"))
    h.update(b"]")
    return h.hexdigest()


class BatchSchedule:
    """Micro-batch k of the run = a pure function of (seed, k): length buckets, shuffled per epoch."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int):
        self.batches = length_batches(lengths, batch_size)
        self.seed = seed
        self._orders: dict[int, list[int]] = {}

    def __len__(self) -> int:
        return len(self.batches)

    def micro_batch(self, k: int) -> list[int]:
        epoch, i = divmod(k, len(self.batches))
        if epoch not in self._orders:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._orders[epoch] = torch.randperm(len(self.batches), generator=g).tolist()
        return self.batches[self._orders[epoch][i]]


def total_steps(n_batches: int, tcfg: TrainConfig, max_steps: int | None = None) -> int:
    if max_steps is not None:
        return int(max_steps)
    if tcfg.max_steps is not None:
        return tcfg.max_steps
    return max(1, math.ceil(tcfg.epochs * n_batches / tcfg.grad_accum))


def steps_for_budget(budget: int, tcfg: TrainConfig) -> int:
    """Optimizer steps for every strategy of a budget (equal compute): the steps `tcfg`
    gives a dataset of exactly `budget` examples; finetune.max_steps, when set, wins."""
    if budget < 1:
        raise ValueError(f"budget must be positive, got {budget}")
    return total_steps(math.ceil(budget / tcfg.batch_size), tcfg)


# -- schedule, precision, RNG -----------------------------------------------------------------

def make_scheduler(optimizer, kind: str, warmup: int, total: int):
    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / (warmup + 1)
        if kind == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        if kind == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def use_bf16(setting: Any, device: str) -> bool:
    """bf16 autocast: 'auto' only on a CUDA device that supports it; True forces it (CPU has it)."""
    dev = torch.device(device)
    if setting == "auto":
        return dev.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if setting and dev.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise TrainError(f"bf16=true but {device} does not support bfloat16; set finetune.bf16: false")
    return bool(setting)


def _rng_state() -> dict[str, Any]:
    """Every RNG's state as tensors and plain values (what torch.load(weights_only=True) reads)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# -- LoRA -------------------------------------------------------------------------------------

def lora_targets(model, tcfg: TrainConfig) -> str | list[str]:
    """peft target_modules: the configured names (default every linear layer), restricted to
    `lora_layers` by listing the full module names (peft takes no layer filter with "all-linear")."""
    if tcfg.lora_layers is None:
        return tcfg.lora_target_modules or "all-linear"
    from gdig.influence.modules import layer_index

    n = model.config.num_hidden_layers
    layers = {i + n if i < 0 else i for i in tcfg.lora_layers}
    if not all(0 <= i < n for i in layers):
        raise TrainError(f"lora_layers {tcfg.lora_layers}: out of range for a model with {n} layers")
    wanted = tcfg.lora_target_modules
    names = [name for name, mod in model.named_modules()
             if isinstance(mod, torch.nn.Linear) and layer_index(name) in layers
             and (wanted is None or any(name == w or name.endswith("." + w) for w in wanted))]
    if not names:
        raise TrainError(f"lora_layers {tcfg.lora_layers} with lora_target_modules {wanted}: no linear module matches")
    return names


def wrap_lora(model, tcfg: TrainConfig):
    from peft import LoraConfig, get_peft_model

    lcfg = LoraConfig(
        r=tcfg.lora_r, lora_alpha=tcfg.lora_alpha, lora_dropout=tcfg.lora_dropout,
        target_modules=lora_targets(model, tcfg), task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lcfg)


# -- the loop ---------------------------------------------------------------------------------

def _fingerprint(**parts: Any) -> str:
    return json_hash(parts)


def _save_resume(out: Path, step: int, model, optimizer, scheduler, losses: list[float], fp: str) -> None:
    rdir = out / RESUME_DIR
    rdir.mkdir(parents=True, exist_ok=True)
    params = {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}
    state = {
        "step": step, "fingerprint": fp, "params": params, "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(), "rng": _rng_state(), "losses": list(losses),
    }
    with atomic_file(rdir / "state.pt", "resume") as tmp:  # a crash mid-save keeps the previous state
        torch.save(state, tmp)


def _load_resume(out: Path, fp: str) -> dict[str, Any] | None:
    path = out / RESUME_DIR / "state.pt"
    if not path.exists():
        return None
    try:  # tensors and plain values only: a crafted pickle in a workspace runs nothing
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # refused (not tensors and plain values) or unreadable: start over
        why = (str(err).strip().splitlines() or [type(err).__name__])[0]
        warnings.warn(f"{path}: not a resume state gdig reads ({why[:160]}); finetuning from the start",
                      stacklevel=2)
        path.unlink(missing_ok=True)
        return None
    if not isinstance(state, dict):
        path.unlink(missing_ok=True)
        return None
    if state.get("fingerprint") != fp:
        raise TrainError(
            f"{path}: resume state of a different run (other data, model or finetune settings); "
            f"delete {out / RESUME_DIR} or use another output directory"
        )
    return state


def train_model(
    model,
    tokenizer,
    encoded: list[Encoded] | PackedEncoded,
    tcfg: TrainConfig,
    out_dir: str | Path,
    *,
    steps: int,
    device: str = "cpu",
    fingerprint: str = "",
    progress: bool = True,
    on_step: Callable[[int, float], None] | None = None,
    desc: str = "finetune",
) -> tuple[Any, list[float], int]:
    """Train `model` in place for `steps` optimizer steps; resumable under out_dir/resume.

    Returns (trained model — a peft model for LoRA, losses per step, step resumed from).
    `on_step(step, loss)` runs after each optimizer step (and after a due resume save).
    desc: the progress label (terminal bar and gdig.progress reporters).
    """
    from gdig.progress import Tracker

    out = Path(out_dir)
    seed_everything(tcfg.seed)
    if tcfg.method == "lora":
        model = wrap_lora(model, tcfg)  # LoRA init draws from the seeded RNG
    model.to(device)
    params, optimizer = _adamw(model, tcfg)
    scheduler = make_scheduler(optimizer, tcfg.scheduler, int(tcfg.warmup_ratio * steps), steps)
    lengths = encoded.lengths() if isinstance(encoded, PackedEncoded) else [len(e.input_ids) for e in encoded]
    schedule = BatchSchedule(lengths, tcfg.batch_size, tcfg.seed)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    autocast = _autocast(tcfg, device)

    start, losses = 0, []
    state = _load_resume(out, fingerprint)
    if state is not None:
        start, losses = _restore(state, model, optimizer, scheduler)

    split = _target_head(model, collate([encoded[i] for i in schedule.micro_batch(0)], pad_id), device, autocast)
    model.train()
    bar = Tracker(desc, total=steps, initial=start, unit="step", enabled=progress)
    for step in range(start, steps):
        micro = [schedule.micro_batch(step * tcfg.grad_accum + j) for j in range(tcfg.grad_accum)]
        batches = [collate([encoded[i] for i in mb], pad_id) for mb in micro]
        losses.append(_accumulate_gradients(model, batches, device, autocast, split))
        if tcfg.max_grad_norm and tcfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, tcfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        bar.update()
        if (step + 1) % tcfg.save_every == 0 and step + 1 < steps:
            _save_resume(out, step + 1, model, optimizer, scheduler, losses, fingerprint)
        if on_step is not None:
            on_step(step + 1, losses[-1])
    bar.close()
    model.eval()
    return model, losses, start


def _autocast(tcfg: TrainConfig, device: str):
    """bf16 autocast where `finetune.bf16` asks for it (use_bf16), else a no-op context."""
    if use_bf16(tcfg.bf16, device):
        return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
    return nullcontext()


def _adamw(model, tcfg: TrainConfig) -> tuple[list, torch.optim.AdamW]:
    """The trainable parameters and their AdamW; weight decay on matrices only (never on
    biases and norms)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": tcfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=tcfg.lr,
    )
    return params, optimizer


def _restore(state: dict[str, Any], model, optimizer, scheduler) -> tuple[int, list[float]]:
    """Put a resume state back (weights, optimizer, scheduler, RNG); returns (step, losses so far)."""
    named = dict(model.named_parameters())
    with torch.no_grad():
        for n, t in state["params"].items():
            named[n].copy_(t.to(named[n].device))
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    _set_rng_state(state["rng"])
    return int(state["step"]), list(state["losses"])


def _target_head(model, batch: dict, device: str, autocast) -> SplitHead | None:
    """The model split into backbone and LM head for the target-only loss (gdig.target_loss),
    checked on one row; None, with a warning, for a model the split does not reproduce."""
    split, why = split_head(model, batch, device, autocast)
    if split is None:
        warnings.warn(f"training with full logits at every position (slower): {why}", stacklevel=3)
    return split


def _accumulate_gradients(model, batches: list[dict], device: str, autocast, split: SplitHead | None) -> float:
    """Backward of one optimizer step's micro-batches; the loss is the mean over all target
    tokens of the step (so grad_accum x batch_size equals one batch of that size).  Returns it.
    The LM head runs on target positions only (gdig.target_loss); `split` None: full logits."""
    if split is None:
        return _full_logits_gradients(model, batches, device, autocast)
    n_tok = sum(int((b["labels"][:, 1:] != IGNORE).sum()) for b in batches)
    step_loss = 0.0
    for b in batches:
        b = {k: v.to(device) for k, v in b.items()}
        step_loss += target_loss_backward(split, b, n_tok, autocast).item()
    return step_loss / n_tok


def _full_logits_gradients(model, batches: list[dict], device: str, autocast) -> float:
    """_accumulate_gradients from the logits at every position over the whole vocabulary (the
    reference the target-only path is tested and benchmarked against, and the fallback)."""
    n_tok = sum(int((b["labels"][:, 1:] != IGNORE).sum()) for b in batches)
    step_loss = 0.0
    for b in batches:
        b = {k: v.to(device) for k, v in b.items()}
        with autocast:
            logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
        loss_sum = F.cross_entropy(
            logits[:, :-1].float().reshape(-1, logits.size(-1)), b["labels"][:, 1:].reshape(-1),
            ignore_index=IGNORE, reduction="sum",
        )
        (loss_sum / n_tok).backward()
        step_loss += loss_sum.item()
    return step_loss / n_tok


def _model_ref(model_cfg: ModelConfig, base: str | None):
    """The model a finetune starts from: the config's own, or a checkpoint directory gdig wrote."""
    from gdig.modeling import ModelRef, is_base

    return ModelRef.of(model_cfg) if is_base(model_cfg, base) else ModelRef(str(base))


def _save_final(model, tokenizer, out: Path, method: str) -> None:
    if method == "lora":
        model.save_pretrained(out / "adapter")  # the unmerged adapter, for users who want it
        model = model.merge_and_unload()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    faults.reached("checkpoint write")  # the weights on disk, the done marker not yet


def _files(out: Path) -> dict[str, int]:
    """The finished checkpoint's files and their sizes (the resume state and marker aside)."""
    return {str(f.relative_to(out)): f.stat().st_size for f in sorted(out.rglob("*"))
            if f.is_file() and f.name not in (DONE_FILE, DONE_FILE + ".sum") and RESUME_DIR not in f.relative_to(out).parts}


def finetune(
    model_cfg: ModelConfig,
    prompt: PromptConfig,
    tcfg: TrainConfig,
    data: Any,
    out_dir: str | Path,
    *,
    base: str | None = None,
    max_steps: int | None = None,
    progress: bool = True,
    on_step: Callable[[int, float], None] | None = None,
    desc: str = "finetune",
    src_lang: str | None = None,
    tgt_lang: str | None = None,
    record: dict | None = None,
) -> TrainResult:
    """Finetune the model of `model_cfg` (or the checkpoint dir `base`) on `data` into out_dir.

    data: DataFrame / list of dicts (src, tgt, src_lang, tgt_lang) or a JSONL path.
    A finished run with the same fingerprint in out_dir is reused; an interrupted one resumes.
    record: written into the done marker (so two strategies that picked the same rows still
    get distinct checkpoint ids, and their metric rows do not overwrite each other).
    """
    t0 = time.time()
    out = Path(out_dir)
    df = load_training_frame(data, src_lang, tgt_lang)
    tcfg = TrainConfig(**{k: v for k, v in tcfg.model_dump().items() if k in _TRAIN_FIELDS})
    start_from = _model_ref(model_cfg, base)
    tok = start_from.load_tokenizer(model_cfg.trust_remote_code)
    encoded, summary = encode_frame(tok, df, prompt)
    n_batches = math.ceil(len(encoded) / tcfg.batch_size)
    steps = total_steps(n_batches, tcfg, max_steps)
    base_id = start_from.hash()
    fp = _fingerprint(
        base=base_id, dtype=model_cfg.dtype, train=tcfg.model_dump(mode="json"), steps=steps,
        prompt=prompt.model_dump(mode="json"),
        data=tokens_hash(encoded),
    )
    finished = _finished_run(out, fp, summary, t0)
    if finished is not None:
        return finished
    out.mkdir(parents=True, exist_ok=True)
    model = start_from.load_model(dtype=model_cfg.dtype, device=model_cfg.device,
                                  trust_remote_code=model_cfg.trust_remote_code)
    model, losses, start = train_model(
        model, tok, encoded, tcfg, out, steps=steps, device=model_cfg.device, fingerprint=fp,
        progress=progress, on_step=on_step, desc=desc,
    )
    _save_final(model, tok, out, tcfg.method)
    _mark_done(out, {"fingerprint": fp, "steps": steps, "n_examples": len(encoded), "losses": losses,
                     "encode_summary": summary, "base": base or model_cfg.name_or_path, "base_hash": base_id,
                     "finetune": tcfg.model_dump(mode="json"), "record": record, "files": _files(out)})
    return TrainResult(str(out), steps, len(encoded), losses, start, False, summary, time.time() - t0)


def _finished_run(out: Path, fp: str, summary: str, t0: float) -> TrainResult | None:
    """The finished run in `out` when it has this fingerprint; None when there is none; an error
    when it is another run's."""
    done = out / DONE_FILE
    if not done.exists():
        return None
    info = json.loads(done.read_text())
    if info.get("fingerprint") == fp and "files" in info and info["files"] != _files(out):
        warnings.warn(f"{out}: the finished checkpoint's files are not as it wrote them (missing or another "
                      f"size); training it again", stacklevel=2)
        done.unlink()
        return None
    if info.get("fingerprint") == fp:
        return TrainResult(str(out), info["steps"], info["n_examples"], info["losses"], 0, True,
                           info.get("encode_summary", summary), time.time() - t0)
    raise TrainError(f"{out} holds a finished run of different data/settings; choose another output directory")


def _mark_done(out: Path, info: dict[str, Any]) -> None:
    """Write the done marker atomically, then drop the resume state it makes obsolete."""
    with atomic_file(out / DONE_FILE, "done marker") as tmp:
        tmp.write_text(json.dumps(info, indent=1, sort_keys=True))
    shutil.rmtree(out / RESUME_DIR, ignore_errors=True)


# -- stages (wrapped one-to-one by gdig_flows/tasks/) ---------------------------------------------------

def model_hash(path: str, gguf_file: str | None = None) -> str:
    """The content hash of a checkpoint directory (gdig.modeling.model_hash, remembered per file
    sizes and mtimes)."""
    from gdig.modeling import model_hash as remembered

    return remembered(path, gguf_file)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:60]


def _record(store, path: str, kind: str, base: str | None, selection_id: str | None, meta: dict) -> dict:
    ckpt_id = model_hash(path)
    store.add_checkpoint(ckpt_id, kind, path, base=base, selection_id=selection_id, meta=meta)
    return {"checkpoint_id": ckpt_id, "path": str(path)}


def _train_stage_dir(cfg: GdigConfig, prefix: str, tcfg: TrainConfig, example_ids: list[str], extra: Any,
                     code: str = "") -> Path:
    """The checkpoint directory: named by the base model, settings, examples and the training
    code's key (gdig.graph.code_keys; empty: none given), so edited code trains anew."""
    parts = {"code": code} if code else {}
    key = _fingerprint(
        base=checkpoint_hash_of_base(cfg), dtype=cfg.model.dtype,
        train={k: v for k, v in tcfg.model_dump(mode="json").items() if k in _TRAIN_FIELDS},
        prompt=cfg.prompt.model_dump(mode="json"), examples=example_ids, extra=extra, **parts,
    )
    return Workspace(cfg).checkpoint(prefix, key)


def check_model(cfg: GdigConfig, path: str | None = None) -> None:
    """Before a model is recorded or trained on: it exists and is readable (ModelLoadError), and
    prompt.max_length fits its position limit (ConfigError).  path: a checkpoint dir in place of
    cfg.model."""
    from gdig.config import ConfigError

    name = path or cfg.model.name_or_path
    limit = _model_ref(cfg.model, path).position_limit(cfg.model.trust_remote_code)
    if limit is not None and cfg.prompt.max_length > limit:
        raise ConfigError(f"prompt.max_length {cfg.prompt.max_length} is above the position limit {limit} of "
                          f"the model {name}; lower prompt.max_length to at most {limit}")


def base_checkpoint(cfg: GdigConfig, store) -> dict:
    """The base model of the config as a store checkpoint (kind 'base'; id: ModelRef.hash, a hub
    id's resolved commit recorded in its meta), recorded only once the model is known to load
    (check_model)."""
    from gdig.modeling import ModelRef

    check_model(cfg)
    ref = ModelRef.of(cfg.model)
    ckpt_id = ref.hash()
    store.add_checkpoint(ckpt_id, "base", cfg.model.name_or_path, meta=ref.record())
    return {"checkpoint_id": ckpt_id, "path": cfg.model.name_or_path}


def pool_checkpoint(cfg: GdigConfig, store, progress: bool = True, n_rows: int | None = None,
                    code: str = "") -> dict:
    """Step 1 of the method: the checkpoint whose gradients drive selection.

    pool_finetune.enabled: finetune cfg.model on the "pool" dataset (its first ``n_rows``: the
    reference pool, see gdig.stages.data.pool_reference; None: all of it) into
    {workspace.dir}/checkpoints/pool-<hash> (reused when already trained); elif
    pool_finetune.checkpoint: that checkpoint; else the base model.
    Returns {"checkpoint_id", "path"}.
    """
    from gdig.modeling import ModelRef

    pf = cfg.pool_finetune
    if pf.enabled:
        check_model(cfg)
        pool = store.dataset_examples("pool")
        pool = pool if n_rows is None else pool.iloc[:n_rows].reset_index(drop=True)
        out = _train_stage_dir(cfg, "pool", pf, list(pool["example_id"]), None, code)
        res = finetune(cfg.model, cfg.prompt, pf, pool, out, progress=progress, desc="finetune-pool")
        meta = {"steps": res.steps, "n_examples": res.n_examples, "final_loss": res.losses[-1] if res.losses else None,
                "first_loss": res.losses[0] if res.losses else None, "encode": res.encode_summary,
                "method": pf.method, "model": ModelRef.of(cfg.model).record()}
        base = checkpoint_hash_of_base(cfg)
        return _record(store, res.path, "pool", base, None, meta)
    if pf.checkpoint:
        if not Path(pf.checkpoint).exists():
            from gdig.modeling import ModelLoadError

            raise ModelLoadError(f"pool_finetune.checkpoint {pf.checkpoint}: no such directory")
        check_model(cfg, pf.checkpoint)
        return _record(store, pf.checkpoint, "pool", None, None, {"source": "pool_finetune.checkpoint"})
    return base_checkpoint(cfg, store)


def checkpoint_hash_of_base(cfg: GdigConfig) -> str:
    """The identity of the config's model (gdig.modeling.ModelRef.hash)."""
    from gdig.modeling import ModelRef

    return ModelRef.of(cfg.model).hash()


def finetune_on_selection(cfg: GdigConfig, store, selection_id: str, max_steps: int, progress: bool = True,
                          code: str = "") -> dict:
    """Finetune the BASE model (cfg.model) on one selection for exactly `max_steps` optimizer steps."""
    sel = store.selection(selection_id)
    if len(sel) == 0:
        raise TrainError(f"selection {selection_id!r} is empty or unknown in {store.path}")
    out = _train_stage_dir(cfg, f"sel-{_safe(selection_id)}", cfg.finetune, list(sel["example_id"]), max_steps, code)
    label = f"finetune {sel['strategy'].iloc[0]}@{int(sel['budget'].iloc[0])}"
    res = finetune(cfg.model, cfg.prompt, cfg.finetune, sel, out, max_steps=max_steps, progress=progress,
                   record={"selection_id": selection_id}, desc=label)
    meta = {"steps": res.steps, "n_examples": res.n_examples, "strategy": str(sel["strategy"].iloc[0]),
            "budget": int(sel["budget"].iloc[0]), "final_loss": res.losses[-1] if res.losses else None,
            "first_loss": res.losses[0] if res.losses else None, "encode": res.encode_summary,
            "method": cfg.finetune.method}
    return _record(store, res.path, "finetune", checkpoint_hash_of_base(cfg), selection_id, meta)


__all__ = [
    "TrainError", "TrainResult", "load_training_frame", "encode_frame", "BatchSchedule", "total_steps",
    "steps_for_budget", "make_scheduler", "use_bf16", "train_model", "finetune", "base_checkpoint",
    "pool_checkpoint", "finetune_on_selection",
]
