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
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from gdig.data.readers.formats import FORMATS
from gdig.errors import BadInput
from gdig.influence.strategies import (DAMPING_RULES, EIGEN_AVERAGES, EKFAC, GRANULARITIES, KFAC, LAST_GROUPS,
                                       LOSS_REDUCTIONS, MODULE_PRESETS, RANK_METHODS, SCORING_PATHS, SEED_WEIGHTINGS,
                                       SEQUENCE_BIASES)
from gdig.influence.strategies import STRATEGIES as CURVATURE_STRATEGIES
from gdig.prefilter.rules import RULES as PREFILTER_RULES
from gdig.selection.allocation import ALLOCATIONS
from gdig.selection.diversity import WITHIN_CLUSTER
from gdig.selection.quality import QUALITY_SCORES
from gdig.selection.select import STRATEGIES, SelectSettings

# gdig's selection defaults, written once (gdig.selection.select.SelectSettings and the D_hq rules' table)
_SELECT = SelectSettings()


class ConfigError(BadInput, ValueError):
    """A config file that cannot be used; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class WorkspaceConfig(_Strict):
    db: str = Field("gdig.duckdb", description="The DuckDB artifact store (one file per workspace).")
    dir: str = Field("artifacts", description="Files beside the store: curvature factors, score shards, checkpoints, "
                     "exports, reports, Prefect results.")
    name: str | None = Field(None, description="The workspace's label in Prefect flow run names, artifact keys and "
                             "report headers; null: the name of the directory holding `workspace.db`.")


class LanguagePair(_Strict):
    src: str = Field(description="Source language: an ISO 639-1 code or a language name, normalised on load "
                     "(`German` -> `de`).")
    tgt: str = Field(description="Target language, as `src`; the two must differ.")


class DataSource(_Strict):
    path: str = Field(description="A file, a Moses prefix (`x` for `x.de` + `x.en`), a `save_to_disk` directory "
                      "or `hf:<name>[:<config>]`; relative paths resolve against the config's directory.")
    name: str | None = Field(None, description="Dataset name in the store (eval sets); null: the file stem.")
    format: Literal[FORMATS] = Field(
        "auto", description="Input format (docs/data.md); `auto` picks it from the path, else from the content.")
    split: str | None = Field(None, description="Split of a `save_to_disk` or hub dataset with several splits.")
    limit: int | None = Field(default=None, ge=1, description="Read at most this many rows from this source.")


class DataConfig(_Strict):
    candidates: list[DataSource] = Field(default_factory=list, description=(
        "Sources of the candidate pool (all go into the dataset `pool`); `select` and `run` need at least one: "
        "empty or missing is a config error (exit 2)."))
    seed: list[DataSource] = Field(default_factory=list, description=(
        "The high-quality seed set (dataset `seed`); required like `data.candidates` (an older `seed` dataset in "
        "the store is never used in its place)."))
    eval: list[DataSource] = Field(default_factory=list, description=(
        "Eval sets, each its own dataset (named by `name` or the file stem)."))
    skip_invalid: bool = Field(False, description="Load the valid rows and record the rest, with their reason, in "
                               "the `rejects` table instead of stopping the ingest.")
    max_chars: int | None = Field(default=20_000, ge=1, description=(
        "A row whose source or target is longer (characters) is invalid, named by file and line at ingest; "
        "null: no limit."))


# the vocabularies only the config names (the tables of the others are imported above)
DTYPE_NAMES = ("float32", "bfloat16", "float16")  # model.dtype; gdig.modeling.DTYPES maps each to torch's
TOO_LONG_POLICIES = ("error", "skip", "truncate_target")  # prompt.too_long (gdig.data.prompts.encode_pair)
FINETUNE_METHODS = ("full", "lora")  # finetune.method, pool_finetune.method (gdig.train)
SCHEDULERS = ("linear", "cosine", "constant")  # finetune.scheduler (gdig.train)
TASK_RUNNERS = ("local", "dask", "ray")  # orchestration.task_runner (gdig_flows.tasks.runtime.task_runner_for)


class ModelConfig(_Strict):
    name_or_path: str = Field(description=(
        "Hub id, local directory, or the directory holding `gguf_file`. A name that is clearly a path (starts "
        "with `/`, `./`, `../` or `~`, or its parent directory exists) is resolved against the config's directory "
        "and must exist: it is never looked up on the hub, and a missing one fails at once (exit 2)."))
    gguf_file: str | None = Field(None, description="A GGUF file in that directory; transformers dequantises it, "
                                  "and finetuned checkpoints are written as ordinary safetensors directories.")
    tokenizer: str | None = Field(None, description="The tokenizer, as in transformers; null: `name_or_path`'s.")
    revision: str | None = Field(
        None,
        description=(
            "Hub revision (branch, tag or commit), as in transformers; null: `main`. A hub id is resolved "
            "to the commit the revision names (asked of the hub when reachable, else read from the local hub "
            "cache), loaded at that commit, and every result that depends on the model is keyed by it (the "
            "store's `checkpoints` rows and the report say which), so a moved branch never reuses an older "
            "commit's results. A local directory or GGUF file is keyed by its content; `revision` does not apply."
        ),
    )
    dtype: Literal[DTYPE_NAMES] = Field("float32", description=(
        "Weights' dtype; curvature factors and scores accumulate in float32/float64 whatever it is."))
    device: str = Field("cpu", description="`cpu`, `cuda`, `cuda:1`, ...")
    trust_remote_code: bool = Field(False, description="As in transformers.")


DEFAULT_TEMPLATE = (
    "Translate the following {src_lang_name} text into {tgt_lang_name}.\n"
    "{src_lang_name}: {src}\n{tgt_lang_name}: "
)


class PromptConfig(_Strict):
    template: str = Field(DEFAULT_TEMPLATE, description=(
        "Fields: `src`, `src_lang`, `tgt_lang`, `src_lang_name`, `tgt_lang_name`; an example is prompt + target "
        "+ EOS and the loss counts target tokens only."))
    max_length: int = Field(default=256, ge=8, description=(
        "Tokens of prompt + target + EOS; above the model's position limit is a config error. A prompt still too "
        "long stops `select` with the dataset, file:line, example id and stage."))
    too_long: Literal[TOO_LONG_POLICIES] = Field("truncate_target", description=(
        "An example above `max_length`: `truncate_target` (reported), `skip` (reported) or `error`; the prompt "
        "is never truncated."))

    @field_validator("template")
    @classmethod
    def _has_src(cls, v: str) -> str:
        if "{src}" not in v:
            raise ValueError("the prompt template must contain {src}")
        return v


class TrainConfig(_Strict):
    method: Literal[FINETUNE_METHODS] = Field("full", description=(
        "`full` (every weight) or `lora` (peft adapters, merged into the base weights for the saved checkpoint; "
        "the unmerged adapter is kept in `<checkpoint>/adapter`)."))
    lora_r: int = Field(default=16, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(32, description="LoRA scaling.")
    lora_dropout: float = Field(default=0.05, ge=0.0, lt=1.0, description="LoRA dropout.")
    lora_target_modules: list[str] | None = Field(None, description=(
        "Module names to adapt; null: every linear layer (`all-linear`)."))
    lora_layers: list[int] | None = Field(None, description=(
        "Adapt only these transformer layers (negative counts from the end: `[-2, -1]` = the top two, a cheap "
        "pool adaptation of a pretrained LLM); null: all."))
    epochs: float = Field(default=1.0, gt=0, description=(
        "Passes over the data (fractional allowed); ignored when `max_steps` is set."))
    max_steps: int | None = Field(default=None, ge=1, description=(
        "A fixed number of optimizer steps; wins over `epochs`."))
    batch_size: int = Field(default=8, ge=1, description="Examples per micro-batch (length-bucketed).")
    grad_accum: int = Field(default=1, ge=1, description=(
        "Micro-batches per optimizer step; the loss is the target-token mean over the whole step, so "
        "`batch_size 4 x grad_accum 2` equals `batch_size 8`."))
    lr: float = Field(default=2e-5, gt=0, description="Peak AdamW learning rate.")
    weight_decay: float = Field(default=0.0, ge=0, description=(
        "AdamW weight decay (matrices only; biases and norms never decay)."))
    scheduler: Literal[SCHEDULERS] = Field("linear", description=(
        "`linear` or `cosine` decay after the warmup, or `constant`."))
    warmup_ratio: float = Field(default=0.03, ge=0, lt=1, description="Fraction of the steps with linear warmup.")
    max_grad_norm: float = Field(1.0, description="Gradient clipping; 0 disables it.")
    seed: int = Field(_SELECT.seed, description=(
        "Random seed (not the seed set) of the init (LoRA), the data order and dropout; the same seed gives the "
        "same weights."))
    bf16: Literal["auto", True, False] = Field("auto", description=(
        "bf16 autocast: `auto` only on a CUDA device that supports it; `true` forces it (CPU too); `false` never."))
    save_every: int = Field(default=200, ge=1, description=(
        "Optimizer steps between resumable states (`<checkpoint>/resume/state.pt`: weights, optimizer, scheduler, "
        "RNG, step); a re-run after a crash continues from the last one and ends with the same weights as an "
        "uninterrupted run."))


class PoolFinetuneConfig(TrainConfig):
    """Step 1 of the method: the model whose gradients drive selection."""

    enabled: bool = Field(False, description=(
        "Finetune `model` on the whole candidate pool first, into `{workspace.dir}/checkpoints/pool-<hash>` "
        "(reused when already trained); gradients are then taken at that checkpoint."))
    checkpoint: str | None = Field(None, description=(
        "Or take a checkpoint you already have (a directory). Neither set: gradients are taken at the base "
        "model itself."))


class ModuleSelection(_Strict):
    preset: Literal[MODULE_PRESETS] = Field("auto", description=(
        "`llama` (Llama/Qwen/Mistral/Gemma: `mlp.{gate,up,down}_proj`), `bloom` (`mlp.dense_h_to_4h`, as the "
        "paper's code), `gpt2` (`mlp.c_fc`, `mlp.c_proj`, HF Conv1D), `auto` (from `model_type`), `official` "
        "(the G-DIG reference code's map, from `model_type`: BLOOM `mlp.dense_h_to_4h` of every layer, Llama "
        "family `mlp.down_proj` of layers 0, 3, 6, ...; other families are an error), `none`."))
    include: list[str] = Field(default_factory=list, description=(
        "Extra regexes (`re.search`) over module names to add."))
    exclude: list[str] = Field(default_factory=list, description="Regexes over module names to remove.")
    layers: list[int] | None = Field(None, description=(
        "Keep only these layer indices; negative counts from the end (`[-1]` = the last layer); null: all."))
    lora_only: bool = Field(False, description=(
        "On a peft model, use only the LoRA `lora_A`/`lora_B` linears of the matched modules; a LoRA pool "
        "checkpoint (`pool_finetune.method: lora`) is then loaded as the base model with its unmerged adapter, "
        "so influence is taken over the adapter's own weights (as LESS does)."))


class CurvatureConfig(_Strict):
    strategy: Literal[tuple(CURVATURE_STRATEGIES)] = Field("ekfac", description=(
        "`kfac`, or `ekfac` (eigenvalue-corrected K-FAC, a second pass over the data)."))
    granularity: Literal[GRANULARITIES] = Field("sequence", description=(
        "`token`: one outer product per token (standard K-FAC, as kronfluence); `sequence`: per example, a and "
        "g summed over its tokens first (the paper's reference code)."))
    damping: float | None = Field(default=None, gt=0, description=(
        "λ; null: the damping rule's own, " + ", ".join(f"{r.default_damping:g} for `{r.name}`" for r in DAMPING_RULES.values())
        + " (the reference code's for `pi` and `absolute`, kronfluence's for `mean_eigenvalue`)."))
    kfac_damping: Literal[KFAC.damping_rules] = Field(KFAC.damping_rules[0], description=(
        "K-FAC damping: `pi` (factored Tikhonov with the π-correction, the reference code) or `mean_eigenvalue` "
        "((G ⊗ A + δI)⁻¹ with δ = λ·mean(λ_G ⊗ λ_A), kronfluence's)."))
    ekfac_damping: Literal[EKFAC.damping_rules] = Field(EKFAC.damping_rules[0], description=(
        "EK-FAC shift δ = λ (`absolute`) or λ·mean(Λ) (`mean_eigenvalue`, scale-free, kronfluence's)."))
    eigen_average: Literal[EIGEN_AVERAGES] = Field("auto", description=(
        "EK-FAC corrected eigenvalues averaged per `token` or per `example` (kronfluence's convention); `auto`: "
        "per token in `token` granularity, per example in `sequence`."))
    sequence_bias: Literal[SEQUENCE_BIASES] = Field("one", description=(
        "`sequence` granularity, modules with a bias: the bias entry of the summed input is `one` per example "
        "(the reference code) or `tokens` (the example's token count)."))
    sample: int | None = Field(default=None, ge=1, description=(
        "Fit the curvature on this many pool examples (drawn with `sample_seed`); null: all."))
    fp64: bool = Field(True, description=(
        "Sum the factors and eigenvalue corrections over batches in float64 (each batch's products in float32)."))
    batch_size: int = Field(default=8, ge=1, description=(
        "Examples per forward+backward while fitting (length-bucketed)."))
    sample_seed: int = Field(0, description="Random seed of the `sample` draw.")


class SeedSetConfig(_Strict):
    """How the seed SET (the high-quality examples, data.seed) enters influence."""

    batch_size: int = Field(default=1, ge=1, description=(
        "Consecutive seeds grouped into one product (the reference code uses pairs: 2)."))
    weighting: Literal[SEED_WEIGHTINGS] = Field("auto", description=(
        "A group's gradient: `tokens` = the gradient of the group's loss over all its target tokens at once "
        "(the reference), `examples` = the plain average of the per-example gradients; `auto`: `tokens` in "
        "`sequence` granularity, `examples` in `token` (equal for batch size 1)."))
    low_rank: int | None = Field(default=None, ge=1, description=(
        "Keep each product as its best rank-r factorisation (SVD) to save memory; null: full rank."))
    last_group: Literal[LAST_GROUPS] = Field("keep", description=(
        "A last group with fewer than `batch_size` seeds (an odd last seed in pairs): `keep` it as a smaller "
        "group, or `drop` those seeds (the reference code's handling; the dropped ids are recorded with the "
        "products)."))


class GradientRankConfig(_Strict):
    """The reference code's low-rank step: candidate and seed gradients cut to rank r before influence."""

    rank: int | None = Field(default=None, ge=1, description=(
        "Replace each module's candidate gradient and seed (group) gradient by a rank-r approximation before "
        "H⁻¹ and the inner product (the reference code: 32, with `torch.svd_lowrank`); null: the exact "
        "gradients."))
    method: Literal[RANK_METHODS] = Field("randomized", description=(
        "`randomized`: `torch.svd_lowrank`'s algorithm (a Gaussian test matrix, `niter` subspace iterations, "
        "q = r), the test matrix drawn per module from `seed`, so every run, batch and shard gives the same "
        "numbers; `exact`: the truncated SVD (the best rank-r approximation)."))
    niter: int = Field(default=2, ge=0, description="`randomized`: subspace iterations (torch's default 2).")
    seed: int = Field(0, description="`randomized`: seed of the test matrices (with the module name).")


class ScoringConfig(_Strict):
    batch_size: int = Field(default=8, ge=1, description=(
        "Candidates per forward+backward (length-bucketed; larger batches amortise reading the products)."))
    shard_size: int = Field(default=4096, ge=1, description=(
        "Candidates per shard and task; shards are position ranges aligned to multiples of it."))
    sketch: bool = Field(True, description="Also emit the gradient sketch the diversity clustering uses.")
    sketch_dim_g: int = Field(default=16, ge=1, description=(
        "Sketch size k_g on the output-gradient side, per module: the sketch is `Σ_t (P_g g_t)(P_a a_t)ᵀ`, "
        "P Gaussian N(0, 1/k)."))
    sketch_dim_a: int = Field(default=16, ge=1, description="Sketch size k_a on the activation side, per module.")
    sketch_seed: int = Field(0, description="Seed of the sketch projections (with the module name).")
    path: Literal[SCORING_PATHS] = Field("auto", description=(
        "Per-module contraction: `per_example` (form Σ_t g_t a_tᵀ, one GEMM against all products) or `token` "
        "(low-rank products only); `auto` picks the one with fewer multiply-adds for each batch."))


class InfluenceConfig(_Strict):
    modules: ModuleSelection = Field(default_factory=ModuleSelection, description=(
        "Which linear modules gradients are taken over."))
    loss: Literal[LOSS_REDUCTIONS] = Field("mean", description=(
        "Per-example loss: the `mean` cross-entropy over the example's target tokens (reference code) or the "
        "`sum`."))
    curvature: CurvatureConfig = Field(default_factory=CurvatureConfig, description=(
        "The Hessian approximation (K-FAC / EK-FAC) and its damping."))
    seed_set: SeedSetConfig = Field(default_factory=SeedSetConfig, description=(
        "How the seed set (`data.seed`) enters influence; `influence.seed` is its old name, still read with a "
        "warning."))
    scoring: ScoringConfig = Field(default_factory=ScoringConfig, description=(
        "Scoring the candidates against every seed product."))
    gradient_rank: GradientRankConfig = Field(default_factory=GradientRankConfig, description=(
        "The low-rank step of the reference code on candidate and seed gradients (off by default)."))

    @model_validator(mode="after")
    def _rank_needs_per_example(self) -> "InfluenceConfig":
        if self.gradient_rank.rank is not None and self.scoring.path == "token":
            raise ValueError("influence.gradient_rank.rank cuts each candidate's gradient, which "
                             "influence.scoring.path token never forms: use auto or per_example")
        return self

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
    budgets: list[int] = Field(default_factory=lambda: [1000], description="Selection sizes N.")
    strategies: list[Strategy] = Field(default_factory=lambda: ["gdig", "random"], description=(
        "`gdig` (quality then diversity), `random`, `quality` (top-N by the quality ranking), `loss` (the N "
        "lowest own target losses at the scoring checkpoint: the simplest competitor, free from the scoring "
        "pass), `diversity` (clustering over the whole pool), `full` (the whole pool)."))
    gamma: float | Literal["auto"] = Field(_SELECT.gamma, description=(
        "Eq. 4: a candidate is high-quality (in D_hq) when it helps (I < 0) at least this fraction of the seed "
        "groups. `auto`: the largest γ on the grid k / n_groups at which D_hq holds at least `hq_multiple × N` "
        "candidates (chosen per budget, printed and stored with the selection). A number is the paper's fixed "
        "rule; when fewer than N qualify, the rest is filled from the next-ranked candidates (`filled`)."))
    hq_multiple: float = Field(default=_SELECT.hq_multiple, ge=1.0, description=(
        "`gamma: auto` asks for `ceil(hq_multiple × N)` high-quality candidates, so the diversity step has a "
        "choice."))
    quality: Literal[tuple(QUALITY_SCORES)] = Field(_SELECT.quality, description=(
        "The score that orders candidates (D_hq first, then the rest): `paper` (helped fraction, then mean "
        "influence), `influence` (−mean influence), `normalized` (−mean influence / ‖g_z‖), `loss` (−own target "
        "loss), `combined` (mean percentile rank of `normalized` and `loss`)."))
    allocation: Literal[ALLOCATIONS] = Field(
        _SELECT.allocation, description=(
            "Picks per cluster in the diversity step: `even` (the paper: clusters take turns), `size` "
            "(proportional to cluster size), `size_quality` (size × mean quality), `drop_low` (clusters whose mean "
            "quality percentile is more than `drop_margin` below D_hq's left out, the rest by size), `cover` "
            "(`drop_low`'s clusters, each with one pick before any takes a second, the rest by size), "
            "`cover_best` (one pick per kept cluster, the rest to the best remaining members in quality order)."))
    drop_margin: float = Field(default=_SELECT.drop_margin, ge=0.0, le=1.0, description=(
        "`drop_low`, `cover`, `cover_best`: how far below D_hq's mean quality percentile (0.5) a cluster may "
        "fall."))
    closing_loss_max: float | None = Field(default=_SELECT.rules["closing_loss_max"], gt=0.0, description=(
        "The closing-token rule of `gdig` and `quality`: a candidate whose last target token (the appended EOS) "
        "costs the model more than this many nats is outside D_hq and ranks last (a truncated target stops "
        "mid-sentence: the mean loss hardly sees it, the loss of stopping there does); null: off. In nats of "
        "the scoring model: gdig warns when the rule ranks more than half of the pool last."))
    source_gain_min: float | None = Field(_SELECT.rules["source_gain_min"], description=(
        "The source-gain rule of `gdig` and `quality`: a candidate whose target loss falls by less than this "
        "(nats per target token) when the model sees the source is outside D_hq and ranks last (misaligned and "
        "wrong-language targets gain nothing from the source). Setting it adds the stage `source-free-loss`: "
        "one no-grad forward per scored candidate with an empty `{src}`, stored batch by batch; null: off."))
    n_clusters: int | None = Field(default=_SELECT.n_clusters, ge=1, description=(
        "K of K-means; null: `clamp(round(sqrt(N)), 2, size of D_hq)`."))
    normalize: bool = Field(_SELECT.normalize, description="L2-normalise the sketches before K-means.")
    within_cluster: Literal[WITHIN_CLUSTER] = Field(_SELECT.within_cluster, description=(
        "Order within a cluster: `random` (seeded) or `quality` (best first by `quality`)."))
    seed: int = Field(_SELECT.seed, description=(
        "Random seed (not the seed set: that is `data.seed`) of K-means and every random choice."))

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
    model: str | None = Field(None, description=(
        "COMET checkpoint path or downloadable name (e.g. `Unbabel/wmt22-comet-da`; needs "
        "`pip install 'gdig[comet]'`); null: no COMET (its row says why, never a made-up number)."))
    batch_size: int = Field(16, description="COMET batch size.")


class EvaluateConfig(_Strict):
    batch_size: int = Field(default=8, ge=1, description="Prompts per generation batch (left padding; length-bucketed).")
    num_beams: int = Field(default=1, ge=1, description="1: greedy; more: beam search.")
    max_new_tokens: int = Field(default=256, ge=1, description="Hard cap on generated tokens.")
    length_ratio: float = Field(default=2.0, gt=0, description=(
        "Per-row cap on new tokens: `min(max_new_tokens, ceil(length_ratio * source_tokens) + 8)`."))
    comet: CometConfig = Field(default_factory=CometConfig, description="COMET, when a checkpoint is available.")


class OrchestrationConfig(_Strict):
    task_runner: Literal[TASK_RUNNERS] = Field("local", description=(
        "Where the `curvature-shard` and `score-shard` tasks run: `local` (threads in the flow's process), "
        "`dask` (prefect-dask), `ray` (prefect-ray, not installed by gdig)."))
    address: str | None = Field(None, description=(
        "Dask scheduler (`tcp://host:8786`) or Ray address; null: a local cluster."))
    workers: int = Field(default=1, ge=1, description="Threads (local) or Dask LocalCluster workers.")
    devices: list[str] = Field(default_factory=list, description=(
        "Shard i runs on `devices[i % len]` (e.g. `[cuda:0, cuda:1]`); empty: `model.device`."))
    retries: int = Field(default=2, ge=0, description=(
        "Retries of every task after a stage failure (a store lock held by another run, I/O, a crash); never "
        "after bad input or config, which fails the task at once."))
    retry_delay_seconds: list[float] = Field(default_factory=lambda: [5.0, 30.0], description=(
        "Backoff: the delay before retry 1, 2, ... (the last one repeats)."))
    refit_on_append: bool = Field(False, description=(
        "Candidates appended to the pool: `false` keeps the pool checkpoint, curvature and seed products of the "
        "reference pool (the pool as first fitted) and scores only the new shards; `true` refits on the whole "
        "pool."))
    dask_processes: bool = Field(True, description=(
        "Local Dask cluster: one process per worker (`false`: threads)."))


def _section_help(rule) -> str:
    return " ".join(rule.__doc__.split())


# step 0 of the method: cheap rules that drop obvious noise before any gradient is taken; each rule
# (its settings, checks and measure) is one class of gdig.prefilter.rules, its section built here
PrefilterConfig = create_model(
    "PrefilterConfig", __base__=_Strict,
    enabled=(bool, Field(True, description="`false`: nothing is measured and every row passes (the paper's pipeline).")),
    **{r.section: (r, Field(default_factory=r, description=_section_help(r))) for r in PREFILTER_RULES},
)


class GdigConfig(_Strict):
    preset: str | None = Field(None, description=(
        "A named setting (`gdig/presets.py`) filled in under the keys the config sets itself (those win). "
        "`paper`: G-DIG as the official code runs it: pool finetuning first (one epoch), K-FAC over the MLP "
        "projections of every layer with per-example factors and π-damping at λ = 0.5, seeds in groups of 2, "
        "γ = 1 with the paper's ranking (helped fraction, then mean influence), even turns across clusters, "
        "no prefilter, no closing-token or source-gain rule."))
    workspace: WorkspaceConfig = Field(default_factory=WorkspaceConfig, description=(
        "Where the workspace's artifacts live."))
    languages: LanguagePair = Field(description="The translation direction.")
    data: DataConfig = Field(default_factory=DataConfig, description=(
        "The data sources, ingested into the store by `select` and `run` (formats: docs/data.md)."))
    model: ModelConfig = Field(description="The base model: the one finetuned on every selection.")
    prompt: PromptConfig = Field(default_factory=PromptConfig, description=(
        "How a pair becomes a training example."))
    prefilter: PrefilterConfig = Field(default_factory=PrefilterConfig, description=(
        "Step 0: cheap rules before any gradient. Every verdict is stored with its rule and figure; only rows "
        "that pass are scored and selected; seed and eval sets are judged and reported, never changed."))
    pool_finetune: PoolFinetuneConfig = Field(default_factory=PoolFinetuneConfig, description=(
        "Step 1: the model whose gradients drive selection; the same keys as `finetune`, plus `enabled` and "
        "`checkpoint`."))
    influence: InfluenceConfig = Field(default_factory=InfluenceConfig, description=(
        "Steps 2-4: curvature, seed products and scoring. I(z, s) = −g_zᵀ H⁻¹ g_s; negative: training on z "
        "lowers seed s's loss."))
    selection: SelectionConfig = Field(default_factory=SelectionConfig, description=(
        "Steps 5-6: quality (Eq. 4), diversity (K-means on gradient sketches) and the baselines."))
    finetune: TrainConfig = Field(default_factory=TrainConfig, description=(
        "Step 7: finetuning the base model on each selection; every strategy of a budget trains for the same "
        "number of optimizer steps."))
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig, description=(
        "Translation of the eval sets and the metrics (sacrebleu BLEU and chrF, COMET when available)."))
    orchestration: OrchestrationConfig = Field(default_factory=OrchestrationConfig, description=(
        "Prefect: task runners, devices, retries."))
    demo: dict[str, Any] | None = Field(None, description=(
        "Demo-only knobs (corpus and tiny-model sizes, pretraining), read by `gdig demo`; see "
        "`gdig/demo/config.yaml`."))

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


def require_budgets_fit(cfg: GdigConfig, n_pool: int) -> None:
    """A budget larger than the whole candidate pool can be met by no strategy (each would select
    everything, and the comparison would show nothing): a config error, found right after ingest
    and before any model work."""
    over = [b for b in cfg.selection.budgets if b > n_pool]
    if over:
        raise ConfigError(f"selection.budgets: budget {max(over)} is larger than the candidate pool "
                          f"({n_pool} rows in data.candidates); lower it to at most {n_pool}")


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
    from gdig.presets import apply_preset

    try:
        data = apply_preset(data)
    except ValueError as err:
        raise ConfigError(f"{source}: invalid config: {err}") from None
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
        if parts[0] == "demo":  # it sizes what `gdig demo` generates, before any config is read
            raise ConfigError(f"override {item!r}: demo.* settings are read only by `gdig demo`, which "
                              f"applies them before it generates its workspace; here they would change nothing")
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
