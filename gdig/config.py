"""The workspace config: one YAML file, validated by pydantic.

Every model forbids unknown keys, so a typo is an error that names the key
(``data.candidates.0.pth: Extra inputs are not permitted``).  Relative paths in
the file are resolved against the directory of the YAML file.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gdig.data.readers.formats import FORMATS
from gdig.errors import BadInput
from gdig.selection.allocation import ALLOCATIONS
from gdig.selection.quality import QUALITY_SCORES
from gdig.selection.select import STRATEGIES


class ConfigError(BadInput, ValueError):
    """A config file that cannot be used; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class WorkspaceConfig(_Strict):
    db: str = "gdig.duckdb"  # the DuckDB artifact store
    dir: str = "artifacts"  # factors, score shards, checkpoints, exports, reports
    # label in Prefect run names, artifact keys and reports; default: the db's directory name
    name: str | None = None


class LanguagePair(_Strict):
    src: str  # ISO 639-1 code or a language name ("German"); normalised on load
    tgt: str


class DataSource(_Strict):
    path: str  # file, directory (save_to_disk), Moses prefix or "hf:<dataset>"
    name: str | None = None  # dataset name in the store; default: file stem
    format: Literal[FORMATS] = "auto"
    split: str | None = None  # for save_to_disk / hub datasets
    limit: int | None = Field(default=None, ge=1)  # read at most this many rows


class DataConfig(_Strict):
    candidates: list[DataSource] = Field(default_factory=list)
    seed: list[DataSource] = Field(default_factory=list)
    eval: list[DataSource] = Field(default_factory=list)
    skip_invalid: bool = False  # load valid rows, record the rest in `rejects`
    max_chars: int | None = Field(default=20_000, ge=1)  # longest source/target; longer rows are invalid


class ModelConfig(_Strict):
    name_or_path: str  # hub id, local directory or a directory holding `gguf_file`
    gguf_file: str | None = None
    tokenizer: str | None = None  # default: same as name_or_path
    revision: str | None = None
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    device: str = "cpu"  # "cpu", "cuda", "cuda:1", ...
    trust_remote_code: bool = False


DEFAULT_TEMPLATE = (
    "Translate the following {src_lang_name} text into {tgt_lang_name}.\n"
    "{src_lang_name}: {src}\n{tgt_lang_name}: "
)


class PromptConfig(_Strict):
    template: str = DEFAULT_TEMPLATE
    max_length: int = Field(default=256, ge=8)  # prompt + target + EOS, in tokens
    too_long: Literal["error", "skip", "truncate_target"] = "truncate_target"

    @field_validator("template")
    @classmethod
    def _has_src(cls, v: str) -> str:
        if "{src}" not in v:
            raise ValueError("the prompt template must contain {src}")
        return v


class TrainConfig(_Strict):
    method: Literal["full", "lora"] = "full"
    lora_r: int = Field(default=16, ge=1)
    lora_alpha: int = 32
    lora_dropout: float = Field(default=0.05, ge=0.0, lt=1.0)
    lora_target_modules: list[str] | None = None  # default: every linear layer
    lora_layers: list[int] | None = None  # adapt only these layers (negative = from the end); null: all
    epochs: float = Field(default=1.0, gt=0)
    max_steps: int | None = Field(default=None, ge=1)  # overrides epochs
    batch_size: int = Field(default=8, ge=1)
    grad_accum: int = Field(default=1, ge=1)
    lr: float = Field(default=2e-5, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    scheduler: Literal["linear", "cosine", "constant"] = "linear"
    warmup_ratio: float = Field(default=0.03, ge=0, lt=1)
    max_grad_norm: float = 1.0
    seed: int = 0
    bf16: Literal["auto", True, False] = "auto"
    save_every: int = Field(default=200, ge=1)  # optimizer steps between resumable checkpoints


class PoolFinetuneConfig(TrainConfig):
    """Step 1 of the method: the model whose gradients drive selection."""

    enabled: bool = False  # train on the candidate pool first
    checkpoint: str | None = None  # or take a checkpoint the user already has


class ModuleSelection(_Strict):
    preset: Literal["auto", "llama", "bloom", "gpt2", "none"] = "auto"
    include: list[str] = Field(default_factory=list)  # regexes over module names
    exclude: list[str] = Field(default_factory=list)
    layers: list[int] | None = None  # keep only these layer indices (negative = from the end)
    lora_only: bool = False  # only LoRA adapter weights (peft models)


class CurvatureConfig(_Strict):
    strategy: Literal["kfac", "ekfac"] = "ekfac"
    granularity: Literal["token", "sequence"] = "sequence"
    damping: float | None = Field(default=None, gt=0)  # lambda; None: 0.5 (pi, absolute) or 0.1 (mean_eigenvalue)
    kfac_damping: Literal["pi", "mean_eigenvalue"] = "pi"  # pi: reference code; mean_eigenvalue: kronfluence
    ekfac_damping: Literal["absolute", "mean_eigenvalue"] = "absolute"
    eigen_average: Literal["auto", "token", "example"] = "auto"  # EK-FAC correction; auto follows granularity
    sequence_bias: Literal["one", "tokens"] = "one"  # sequence A factor's bias entry per example (one: reference)
    sample: int | None = Field(default=None, ge=1)  # fit on this many pool examples
    fp64: bool = True
    batch_size: int = Field(default=8, ge=1)
    sample_seed: int = 0  # RNG seed for drawing the `sample` examples


class SeedSetConfig(_Strict):
    """How the seed SET (the high-quality examples, data.seed) enters influence."""

    batch_size: int = Field(default=1, ge=1)  # seeds grouped per product (reference: 2)
    weighting: Literal["auto", "tokens", "examples"] = "auto"  # group gradient; auto: tokens in sequence mode
    low_rank: int | None = Field(default=None, ge=1)


class ScoringConfig(_Strict):
    batch_size: int = Field(default=8, ge=1)
    shard_size: int = Field(default=4096, ge=1)  # candidates per shard / task
    sketch: bool = True
    sketch_dim_g: int = Field(default=16, ge=1)
    sketch_dim_a: int = Field(default=16, ge=1)
    sketch_seed: int = 0
    path: Literal["auto", "per_example", "token"] = "auto"  # contraction; auto = fewer flops (token needs low_rank)


class InfluenceConfig(_Strict):
    modules: ModuleSelection = Field(default_factory=ModuleSelection)
    loss: Literal["mean", "sum"] = "mean"  # per-example reduction over target tokens
    curvature: CurvatureConfig = Field(default_factory=CurvatureConfig)
    seed_set: SeedSetConfig = Field(default_factory=SeedSetConfig)
    scoring: ScoringConfig = Field(default_factory=ScoringConfig)

    @model_validator(mode="before")
    @classmethod
    def _renamed_seed(cls, data: Any) -> Any:
        # `influence.seed` read like an RNG seed; it is the seed set's section, now `seed_set`
        if not isinstance(data, dict) or "seed" not in data:
            return data
        if "seed_set" in data:
            raise ValueError("influence.seed and influence.seed_set are both given; "
                             "influence.seed is the old name of influence.seed_set: keep only seed_set")
        warnings.warn(DEPRECATED_SEED_KEY, FutureWarning, stacklevel=_outside_config_level())
        return {("seed_set" if k == "seed" else k): v for k, v in data.items()}


def _outside_config_level() -> int:
    """The stacklevel of the first frame outside pydantic and this module: the warning then
    names the code that loaded the config, not pydantic's internals."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None:
        module = frame.f_globals.get("__name__", "")
        if module != __name__ and module.partition(".")[0] != "pydantic":
            break
        frame, level = frame.f_back, level + 1
    return level


# FutureWarning, not DeprecationWarning: it is meant for whoever wrote the config, and Python
# shows FutureWarning by default
DEPRECATED_SEED_KEY = ("config key influence.seed is deprecated: rename it to influence.seed_set "
                       "(same keys: batch_size, weighting, low_rank); the old name is still read")


Strategy = Literal[STRATEGIES]


class SelectionConfig(_Strict):
    budgets: list[int] = Field(default_factory=lambda: [1000])
    strategies: list[Strategy] = Field(default_factory=lambda: ["gdig", "random"])
    # Eq. 4 threshold on the helped fraction; "auto": the largest γ with |D_hq| >= hq_multiple x budget
    gamma: float | Literal["auto"] = "auto"
    hq_multiple: float = Field(default=2.0, ge=1.0)
    # defaults chosen on benchmarks/selection_quality.py (cs-en, Gemma 3 270M; see the README)
    quality: Literal[tuple(QUALITY_SCORES)] = "loss"  # ranking score
    allocation: Literal[ALLOCATIONS] = "drop_low"  # picks per cluster
    drop_margin: float = Field(default=0.15, ge=0.0, le=1.0)  # drop_low, cover(_best): how far below D_hq's mean
    # gdig, quality: a candidate whose closing (EOS) token costs more than this many nats is outside
    # D_hq and ranks last (truncated targets); null: off
    closing_loss_max: float | None = Field(default=8.0, gt=0.0)
    # gdig, quality: a candidate whose target loss falls by less than this (nats per target token)
    # when the model sees the source is outside D_hq and ranks last (misaligned, wrong-language
    # targets); costs one no-grad forward per scored row; null: off
    source_gain_min: float | None = None
    n_clusters: int | None = Field(default=None, ge=1)  # default: a function of the budget
    normalize: bool = True  # L2-normalise sketches before K-means
    within_cluster: Literal["random", "quality"] = "quality"
    seed: int = 0

    @field_validator("gamma")
    @classmethod
    def _gamma_range(cls, v):
        if v != "auto" and not 0.0 <= v <= 1.0:
            raise ValueError("gamma must be 'auto' or a number in [0, 1] (less than or equal to 1)")
        return v

    @field_validator("budgets")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if not v or any(b < 1 for b in v):
            raise ValueError("budgets must be a non-empty list of positive integers")
        return v


class CometConfig(_Strict):
    model: str | None = None  # checkpoint path or downloadable name; None: no COMET
    batch_size: int = 16


class EvaluateConfig(_Strict):
    batch_size: int = Field(default=8, ge=1)
    num_beams: int = Field(default=1, ge=1)
    max_new_tokens: int = Field(default=256, ge=1)
    length_ratio: float = Field(default=2.0, gt=0)  # cap new tokens at ratio * source tokens + 8
    comet: CometConfig = Field(default_factory=CometConfig)


class OrchestrationConfig(_Strict):
    task_runner: Literal["local", "dask", "ray"] = "local"
    address: str | None = None  # dask scheduler / ray address; None: a local cluster
    workers: int = Field(default=1, ge=1)
    devices: list[str] = Field(default_factory=list)  # one per worker, e.g. ["cuda:0", "cuda:1"]
    retries: int = Field(default=2, ge=0)
    retry_delay_seconds: list[float] = Field(default_factory=lambda: [5.0, 30.0])
    # appended candidates: False keeps the pool checkpoint + curvature of the reference pool
    # (the pool as first fitted; only new shards are scored); True refits on the whole pool
    refit_on_append: bool = False
    dask_processes: bool = True  # local Dask cluster: a process per worker (False: threads)


# step 0 of the method: cheap rules that drop obvious noise before any gradient is taken.
# Defaults are tuned to reject almost no clean human translation (benchmarks/prefilter_quality.py).
class CopyRule(_Strict):
    enabled: bool = True
    # similarity of source and target after casefolding and dropping punctuation and digits
    # (rapidfuzz ratio / 100); a pair at or above it is an untranslated copy
    max_similarity: float = Field(default=0.9, gt=0.0, le=1.0)


class LangidRule(_Strict):
    enabled: bool = True
    # reject a side when the identifier gives its expected language less than this probability
    min_prob: float = Field(default=0.1, ge=0.0, le=1.0)
    # judge only sides at least this long: on shorter ones the model guesses ("Do you care?": it)
    min_chars: int = Field(default=20, ge=0)
    # languages the identifier confuses and that count as one (probabilities summed)
    equivalent: list[list[str]] = Field(default_factory=lambda: [
        ["bs", "hr", "sr", "sh"], ["no", "nb", "nn"], ["ms", "id"],
    ])

    @field_validator("equivalent")
    @classmethod
    def _groups(cls, v: list[list[str]]) -> list[list[str]]:
        if any(len(g) < 2 for g in v):
            raise ValueError("each group of equivalent languages needs at least two codes")
        return v


class LengthRule(_Strict):
    enabled: bool = True
    min_chars: int = Field(default=1, ge=0)  # each side, characters after stripping outer spaces
    max_chars: int = Field(default=1000, ge=1)  # each side
    # the LONGER side: a pair whose sides are both shorter is a fragment (a short source with
    # a long target is the ratio rule's business); a side in a language without spaces has no
    # word count, the other side decides alone
    min_words: int = Field(default=3, ge=0)
    max_words: int = Field(default=250, ge=1)  # each side

    @model_validator(mode="after")
    def _ordered(self) -> "LengthRule":
        if self.min_chars > self.max_chars:
            raise ValueError(f"min_chars ({self.min_chars}) is above max_chars ({self.max_chars})")
        if self.min_words > self.max_words:
            raise ValueError(f"min_words ({self.min_words}) is above max_words ({self.max_words})")
        return self


class RatioRule(_Strict):
    enabled: bool = True
    # (longer side + smoothing) / (shorter side + smoothing): smoothing keeps short pairs,
    # whose plain ratio swings widely ("Ano." / "Yes, it is."), from failing
    max_chars: float = Field(default=2.0, ge=1.0)
    max_words: float = Field(default=3.0, ge=1.0)  # word counts vary more across languages
    smoothing_chars: float = Field(default=5.0, ge=0.0)
    smoothing_words: float = Field(default=1.0, ge=0.0)


class ScriptRule(_Strict):
    enabled: bool = True
    # share of a side's letters that are in its language's script(s)
    min_fraction: float = Field(default=0.5, ge=0.0, le=1.0)


class NonAlphaRule(_Strict):
    enabled: bool = True
    # share of a side's non-space characters that are not letters (digits, punctuation, symbols)
    max_fraction: float = Field(default=0.5, ge=0.0, le=1.0)


class RepeatRule(_Strict):
    enabled: bool = True
    max_run: int = Field(default=4, ge=1)  # longest run of one token repeated back to back


class PrefilterConfig(_Strict):
    enabled: bool = True  # false: the pure paper pipeline (no rule drops anything)
    length: LengthRule = Field(default_factory=LengthRule)
    copies: CopyRule = Field(default_factory=CopyRule)
    non_alpha: NonAlphaRule = Field(default_factory=NonAlphaRule)
    repeats: RepeatRule = Field(default_factory=RepeatRule)
    script: ScriptRule = Field(default_factory=ScriptRule)
    ratio: RatioRule = Field(default_factory=RatioRule)
    langid: LangidRule = Field(default_factory=LangidRule)


class GdigConfig(_Strict):
    workspace: WorkspaceConfig = Field(default_factory=WorkspaceConfig)
    languages: LanguagePair
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig
    prompt: PromptConfig = Field(default_factory=PromptConfig)
    prefilter: PrefilterConfig = Field(default_factory=PrefilterConfig)
    pool_finetune: PoolFinetuneConfig = Field(default_factory=PoolFinetuneConfig)
    influence: InfluenceConfig = Field(default_factory=InfluenceConfig)
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    finetune: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    orchestration: OrchestrationConfig = Field(default_factory=OrchestrationConfig)
    demo: dict[str, Any] | None = None  # demo-only knobs (corpus size, noise rate), see gdig/demo/config.yaml

    @model_validator(mode="after")
    def _normalise_languages(self) -> "GdigConfig":
        from gdig.data.languages import normalize_lang

        src, tgt = normalize_lang(self.languages.src), normalize_lang(self.languages.tgt)
        if src == tgt:
            raise ValueError(f"languages.src and languages.tgt are both {src!r}")
        object.__setattr__(self.languages, "src", src)
        object.__setattr__(self.languages, "tgt", tgt)
        return self

    def section_hash(self, *sections: str) -> str:
        """Content hash of some config sections: the cache key part a stage depends on."""
        from gdig.workspace import Workspace

        return Workspace(self).settings_hash(*sections)


def require_data(cfg: GdigConfig, roles: tuple[str, ...] = ("candidates", "seed")) -> GdigConfig:
    """`gdig select|run` need these data sections: an empty or missing one is a config error (the
    store may hold an older dataset under that role; it is never used in its place)."""
    for role in roles:
        if not getattr(cfg.data, role):
            raise ConfigError(f"data.{role}: empty or missing; a selection needs at least one source here "
                              f"(data.{role}: [{{path: ...}}])")
    return cfg


def _format_errors(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        lines.append(f"  {key}: {e['msg']}")
    return "\n".join(lines)


def looks_local(name: str, base: Path | None = None) -> bool:
    """A model name that is clearly a local path, not a hub id: absolute, starting with ./ ../
    or ~, more than one '/', or one whose parent directory exists (relative to `base`)."""
    if name in (".", "..") or name.startswith(("/", "./", "../", "~", ".\\", "..\\")) or name.count("/") > 1:
        return True
    p = (base or Path.cwd()) / name
    return p.exists() or (len(Path(name).parts) > 1 and p.parent.is_dir())


def _resolve_paths(cfg: GdigConfig, base: Path) -> GdigConfig:
    def res(p: str | None) -> str | None:
        if p is None or p.startswith("hf:") or Path(p).is_absolute():
            return p
        return str((base / p).resolve())

    cfg.workspace.db = res(cfg.workspace.db)
    cfg.workspace.dir = res(cfg.workspace.dir)
    for role in (cfg.data.candidates, cfg.data.seed, cfg.data.eval):
        for src in role:
            src.path = res(src.path)
    # a model path that exists, or looks like a path, relative to the config is a local dir
    # (resolved against it, never looked up on the hub); otherwise a hub id
    local = base / Path(cfg.model.name_or_path).expanduser()
    if local.exists() or looks_local(cfg.model.name_or_path, base):
        cfg.model.name_or_path = str(local.resolve())
    if cfg.pool_finetune.checkpoint and (base / cfg.pool_finetune.checkpoint).exists():
        cfg.pool_finetune.checkpoint = str((base / cfg.pool_finetune.checkpoint).resolve())
    return cfg


def parse_config(data: dict[str, Any], *, source: str = "<config>", base_dir: Path | None = None) -> GdigConfig:
    """Validate a config dict; errors name the source and each bad key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        cfg = GdigConfig.model_validate(data)
    except ValidationError as err:
        lines = _format_errors(err)
        sep = ": " if "\n" not in lines else "\n  "  # one bad key: one line
        raise ConfigError(f"{source}: invalid config{sep}{lines.strip()}") from None
    return _resolve_paths(cfg, base_dir or Path.cwd())


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` overrides (value parsed as YAML) to a config dict."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. selection.budgets=[100,200]")
        key, raw = item.split("=", 1)
        node = data
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {p} is not a section")
        node[parts[-1]] = yaml.safe_load(raw)
    return data


def load_config(path: str | Path, overrides: list[str] | None = None) -> GdigConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    data = apply_overrides(data or {}, overrides or [])
    return parse_config(data, source=str(path), base_dir=path.parent.resolve())
