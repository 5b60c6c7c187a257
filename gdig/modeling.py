"""Load a causal LM + tokenizer (hub id, local dir or GGUF file), and build tiny ones.

Tiny models (random init from a config, a BPE tokenizer trained on the given
texts) let the demo and the tests run the real loading path offline:
they are written with save_pretrained and read back with from_pretrained.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import torch

from gdig.config import DTYPE_NAMES
from gdig.errors import BadInput
from gdig.workspace import feed_file, sha

DTYPES = {name: getattr(torch, name) for name in DTYPE_NAMES}


class ModelLoadError(BadInput, RuntimeError):
    pass



# One model load at a time per process: transformers' from_pretrained swaps process-wide
# functions while it builds the model (no_init_weights replaces PreTrainedModel.init_weights and
# restores what it saw), so two loads interleaved in threads (mapped shards on a thread task
# runner) can leave init_weights replaced for good: later loads then never tie weights and a
# tied lm_head stays on the meta device.
_LOAD_LOCK = threading.Lock()

def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return DTYPES[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; one of {', '.join(DTYPES)}") from None


def require_local(name_or_path: str) -> None:
    """A name that is clearly a local path (gdig.config.looks_local) must exist: fail at once
    instead of asking the Hugging Face hub (and its retries) for it."""
    from gdig.config import looks_local

    if looks_local(name_or_path) and not Path(name_or_path).expanduser().exists():
        raise ModelLoadError(f"model {name_or_path}: no such file or directory (a local path, so not "
                             f"looked up on the Hugging Face hub)")
    if Path(name_or_path).expanduser().is_file():
        raise ModelLoadError(f"model {name_or_path}: a file, not a model directory (a GGUF file is given as "
                             f"model.name_or_path: its directory, model.gguf_file: its name)")


POSITION_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")


def position_limit(name_or_path: str, *, gguf_file: str | None = None, revision: str | None = None,
                   trust_remote_code: bool = False) -> int | None:
    """The longest sequence the model's config admits (None when it names none, e.g. ALiBi models).
    Reading the config is also the cheap check that the model exists and is readable."""
    from transformers import AutoConfig

    require_local(name_or_path)
    kw = {"revision": revision, "trust_remote_code": trust_remote_code}
    if gguf_file:
        kw["gguf_file"] = gguf_file
    try:
        conf = AutoConfig.from_pretrained(name_or_path, **kw)
    except (OSError, ValueError) as err:
        raise ModelLoadError(_explain(name_or_path, err)) from None
    for key in POSITION_KEYS:
        value = getattr(conf, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def load_tokenizer(name_or_path: str, gguf_file: str | None = None, revision: str | None = None,
                   trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    from gdig.data.prompts import ensure_pad_token

    require_local(name_or_path)

    kw = {"revision": revision, "trust_remote_code": trust_remote_code}
    if gguf_file:
        kw["gguf_file"] = gguf_file
    try:
        tok = AutoTokenizer.from_pretrained(name_or_path, **kw)
    except (OSError, ValueError) as err:
        raise ModelLoadError(_explain(name_or_path, err)) from None
    ensure_pad_token(tok)
    return tok


def load_model(
    name_or_path: str,
    *,
    gguf_file: str | None = None,
    dtype: str | torch.dtype = "float32",
    device: str | torch.device = "cpu",
    revision: str | None = None,
    trust_remote_code: bool = False,
    tokenizer: str | None = None,
):
    """(model, tokenizer) in eval mode on `device` (ModelRef.load of these names)."""
    return ModelRef(name_or_path, gguf_file, revision, tokenizer).load(
        dtype=dtype, device=device, trust_remote_code=trust_remote_code)


def _load_weights(name_or_path: str, gguf_file: str | None, revision: str | None, dtype, trust_remote_code: bool):
    """The causal LM (on the CPU).  GGUF weights are dequantised by transformers."""
    from transformers import AutoModelForCausalLM

    require_local(name_or_path)
    kw = {"revision": revision, "trust_remote_code": trust_remote_code, "dtype": resolve_dtype(dtype)}
    if gguf_file:
        from transformers import GgufConfig

        # dense weights: gradients, finetuning and save_pretrained need them (packed GGUF blocks
        # are inference-only), on every device
        kw.update(gguf_file=gguf_file, quantization_config=GgufConfig(dequantize=True))
    try:
        with _LOAD_LOCK:
            model = AutoModelForCausalLM.from_pretrained(name_or_path, **kw)
    except (OSError, ValueError) as err:
        raise ModelLoadError(_explain(name_or_path, err)) from None
    if gguf_file:
        _drop_gguf_quantizer(model)
    empty = [n for n, p in model.named_parameters() if p.device.type == "meta"]
    if empty:  # a clear error instead of torch's "cannot copy out of meta tensor" at .to(device)
        raise ModelLoadError(f"{name_or_path}: weights not loaded (left on the meta device): {', '.join(empty[:5])}")
    return model


def _drop_gguf_quantizer(model) -> None:
    """A GGUF file loaded dequantised is a plain dense model, but transformers still marks it
    quantized and refuses `save_pretrained`; unmark it so checkpoints (pool finetune, LoRA
    merges) are written as ordinary safetensors."""
    q = getattr(model, "hf_quantizer", None)
    if q is None:
        return
    if not getattr(q.quantization_config, "dequantize", False):
        raise ModelLoadError("the GGUF weights were left packed; gdig needs them dequantised")
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def is_base(model_cfg, checkpoint: str | None) -> bool:
    """Whether `checkpoint` stands for the config's own model (then its gguf_file, tokenizer and
    revision apply) rather than a checkpoint directory gdig wrote."""
    return not checkpoint or str(checkpoint) == str(model_cfg.name_or_path)


def load_from_config(model_cfg, checkpoint: str | None = None, device: str | None = None):
    """Load the model a config names, or a checkpoint directory in its place, on `device`
    (default model.device).  Every stage loads through here, so a GGUF base reaches them all."""
    ref = ModelRef.of(model_cfg) if is_base(model_cfg, checkpoint) else ModelRef(str(checkpoint))
    return ref.load(dtype=model_cfg.dtype, device=device or model_cfg.device,
                    trust_remote_code=model_cfg.trust_remote_code)


# -- the model's identity ------------------------------------------------------------------------

_HEX40 = re.compile(r"[0-9a-f]{40}")
COMMIT_TTL_S = 300.0  # a long-lived process (a served deployment) asks the hub again after this
_COMMITS: dict[tuple[str, str | None], tuple[float, str | None]] = {}
_HASHES: dict[tuple, str] = {}


@dataclass(frozen=True)
class ModelRef:
    """What names a model: where it is (hub id, local directory, or the directory of a GGUF
    file), which revision, which tokenizer.  The one place a model is keyed (`hash`) and loaded
    (`load`, `load_tokenizer`): a local directory or GGUF file is keyed by its content; a hub id
    by the commit its revision resolves to (the hub when reachable, else the local hub cache's
    ref: what an offline load would read) and is loaded at that commit, so a result computed
    from one commit is never handed back for another."""

    name_or_path: str
    gguf_file: str | None = None
    revision: str | None = None
    tokenizer: str | None = None

    @classmethod
    def of(cls, model_cfg) -> "ModelRef":
        """The config's own model (gdig.config.ModelConfig)."""
        return cls(model_cfg.name_or_path, model_cfg.gguf_file, model_cfg.revision, model_cfg.tokenizer)

    @property
    def is_local(self) -> bool:
        """A path (existing, or clearly one: gdig.config.looks_local), never asked of the hub."""
        from gdig.config import looks_local

        return Path(self.name_or_path).expanduser().exists() or looks_local(self.name_or_path)

    def commit(self) -> str | None:
        """The hub commit this revision names now (None for a local model, or when neither the
        hub nor the local cache knows it)."""
        if self.is_local:
            return None
        return resolve_commit(self.name_or_path, self.revision)

    def hash(self) -> str:
        """16 hex characters that change whenever the weights or tokenizer could: the content of
        a local directory / GGUF file, the resolved commit of a hub id.  Unchanged from earlier
        gdig versions for a local model without a separate tokenizer, and for a hub id whose
        revision is unset and unresolvable."""
        if self.is_local:
            weights = model_hash(str(Path(self.name_or_path).expanduser()), self.gguf_file)
        else:
            commit = self.commit()
            at = f"@{commit}" if commit else (f"@{self.revision}" if self.revision else "")
            weights = sha(f"hub:{self.name_or_path}:{self.gguf_file}{at}", 16)
        if self.tokenizer is None:
            return weights
        return sha(f"{weights}|tokenizer:{ModelRef(self.tokenizer).hash()}", 16)

    def record(self) -> dict:
        """What the store and the report say about the model: its names and the commit loaded."""
        return {"name_or_path": self.name_or_path, "gguf_file": self.gguf_file, "revision": self.revision,
                "commit": self.commit(), "tokenizer": self.tokenizer, "model_hash": self.hash()}

    def _revision(self) -> str | None:
        """The revision to load: the resolved commit where there is one (what `hash` keyed)."""
        return self.commit() or self.revision

    def load(self, *, dtype: str | torch.dtype = "float32", device: str | torch.device = "cpu",
             trust_remote_code: bool = False):
        """(model, tokenizer) in eval mode on `device`."""
        return self.load_model(dtype=dtype, device=device, trust_remote_code=trust_remote_code), \
            self.load_tokenizer(trust_remote_code)

    def load_model(self, *, dtype: str | torch.dtype = "float32", device: str | torch.device = "cpu",
                   trust_remote_code: bool = False):
        """The model alone, in eval mode on `device` (for a caller that already holds the tokenizer)."""
        model = _load_weights(self.name_or_path, self.gguf_file, self._revision(), dtype, trust_remote_code)
        model.to(device)
        model.eval()
        return model

    def load_tokenizer(self, trust_remote_code: bool = False):
        if self.tokenizer:
            return ModelRef(self.tokenizer).load_tokenizer(trust_remote_code)
        return load_tokenizer(self.name_or_path, self.gguf_file, self._revision(), trust_remote_code)

    def position_limit(self, trust_remote_code: bool = False) -> int | None:
        return position_limit(self.name_or_path, gguf_file=self.gguf_file, revision=self._revision(),
                              trust_remote_code=trust_remote_code)


def resolve_commit(repo_id: str, revision: str | None) -> str | None:
    """The commit sha a hub revision (None: main) names: itself when it is one; else the hub's
    answer when it is reachable (HF_HUB_OFFLINE unset); else the ref in the local hub cache.
    Remembered for COMMIT_TTL_S seconds per process."""
    if revision and _HEX40.fullmatch(revision):
        return revision
    now = time.monotonic()
    hit = _COMMITS.get((repo_id, revision))
    if hit is not None and now - hit[0] < COMMIT_TTL_S:
        return hit[1]
    commit = _hub_commit(repo_id, revision) or _cached_commit(repo_id, revision)
    _COMMITS[(repo_id, revision)] = (now, commit)
    return commit


def _hub_commit(repo_id: str, revision: str | None) -> str | None:
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE") == "1":
        return None
    try:
        from huggingface_hub import HfApi

        return HfApi().model_info(repo_id, revision=revision, timeout=10).sha
    except Exception:  # unreachable, unknown, gated: the cache (or the load) says the rest
        return None


def _cached_commit(repo_id: str, revision: str | None) -> str | None:
    from huggingface_hub import constants

    ref = Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "refs" / (revision or "main")
    try:
        commit = ref.read_text().strip()
    except OSError:
        return None
    return commit if _HEX40.fullmatch(commit) else None


def model_hash(path: str, gguf_file: str | None = None) -> str:
    """checkpoint_hash, remembered per (path, file sizes and mtimes): a multi-GB base model is
    read once per process, not once per stage."""
    p = Path(path)
    files = sorted(p.rglob("*")) if p.is_dir() else ([p] if p.exists() else [])
    key = (str(p), gguf_file, tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.is_file()))
    if key not in _HASHES:
        _HASHES[key] = checkpoint_hash(path, gguf_file)
    return _HASHES[key]


def _explain(name: str, err: Exception) -> str:
    local = Path(name)
    if local.exists():
        return f"cannot load model/tokenizer from {name}: {err}"
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    return (
        f"cannot load {name!r}: it is not a local directory, and loading it from the Hugging Face hub "
        f"failed{' (HF_HUB_OFFLINE=1)' if offline else ' (no network?)'}: {err}"
    )


def checkpoint_hash(path: str | Path, gguf_file: str | None = None) -> str:
    """Content hash of a checkpoint: weights + config files (or the hub id when not local)."""
    p = Path(path)
    if not p.exists():
        return sha(f"hub:{path}:{gguf_file}", 16)
    h = hashlib.sha256()
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
    if gguf_file:
        files = [p / gguf_file]
    for f in files:
        if f.name.startswith("trainer_state") or "optimizer" in f.name or f.parent.name.startswith("resume"):
            continue
        h.update(str(f.relative_to(p) if p.is_dir() else f.name).encode())
        feed_file(h, f)
    return h.hexdigest()[:16]


# -- tiny models -------------------------------------------------------------------------------

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]


def train_tokenizer(texts: Iterable[str], vocab_size: int = 512):
    """A byte-level BPE tokenizer trained on `texts`, wrapped for transformers (no pad on purpose
    in `pad=False` callers; here <pad> exists)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", bos)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
    )


def build_tiny_model(
    texts: Iterable[str],
    out_dir: str | Path,
    *,
    arch: str = "llama",
    vocab_size: int = 512,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    intermediate: int = 128,
    max_positions: int = 512,
    seed: int = 0,
    pad_token: bool = True,
) -> Path:
    """Random-init a tiny causal LM with a tokenizer trained on `texts`; save_pretrained to out_dir.

    arch: "llama" (mlp.*_proj), "bloom" (mlp.dense_h_to_4h) or "gpt2" (Conv1D mlp.c_fc).
    pad_token=False saves a tokenizer without a pad token (as Llama's ships).
    """
    from transformers import BloomConfig, GPT2Config, LlamaConfig, AutoModelForCausalLM

    tok = train_tokenizer(texts, vocab_size)
    if not pad_token:
        tok.pad_token = None
    ids = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
               pad_token_id=tok.pad_token_id if pad_token else None)
    n_vocab = len(tok)
    if arch == "llama":
        cfg = LlamaConfig(vocab_size=n_vocab, hidden_size=hidden, intermediate_size=intermediate,
                          num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                          max_position_embeddings=max_positions, tie_word_embeddings=False, **ids)
    elif arch == "bloom":
        cfg = BloomConfig(vocab_size=n_vocab, hidden_size=hidden, n_layer=layers, n_head=heads, **ids)
    elif arch == "gpt2":
        cfg = GPT2Config(vocab_size=n_vocab, n_embd=hidden, n_layer=layers, n_head=heads,
                         n_positions=max_positions, n_inner=intermediate, **ids)
    else:
        raise ValueError(f"unknown tiny arch {arch!r}: llama, bloom or gpt2")
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
