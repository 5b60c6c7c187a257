"""The influence settings' vocabularies, torch-free: the curvature strategies (what K-FAC and
EK-FAC each need), their damping rules, and the names the other influence keys take.

This module sits below gdig.config (docs/DESIGN.md, "Layers"): the config builds its choices
from these tables, and the torch code asks them instead of spelling the names again.

A strategy says which passes over the curvature rows it needs (K-FAC: the factor sums; EK-FAC:
those, then a second pass that sums the corrected eigenvalues in the factors' eigenbases), which
files a fit writes besides the per-shard partials (EK-FAC: the eigenbases between the passes),
and which config key names its damping rule, with the rules that key takes.  How the partials
combine is gdig.influence.curvature.combine_partials, which asks the strategy.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DampingRule:
    name: str  # the value of influence.curvature.kfac_damping / ekfac_damping
    default_damping: float  # λ when influence.curvature.damping is unset


DAMPING_RULES: dict[str, DampingRule] = {r.name: r for r in (
    DampingRule("pi", 0.5),  # factored Tikhonov with the π-correction (the reference code's)
    DampingRule("absolute", 0.5),  # EK-FAC: δ = λ
    DampingRule("mean_eigenvalue", 0.1),  # δ = λ · mean eigenvalue (kronfluence's, scale-free)
)}


@dataclass(frozen=True)
class CurvatureStrategy:
    name: str  # the influence.curvature.strategy value
    label: str  # how messages name it
    passes: tuple[str, ...]  # partial kinds summed over the rows, in pass order
    damping_key: str  # the influence.curvature key naming its damping rule
    damping_rules: tuple[str, ...]  # the rules that key takes (DAMPING_RULES), its default first

    @property
    def eigen_pass(self) -> bool:
        """Whether it needs a second pass over the rows, in eigenbases fitted between the passes."""
        return "eigen" in self.passes

    @property
    def writes_bases(self) -> bool:
        return self.eigen_pass

    def damping_rule(self, kfac_damping: str, ekfac_damping: str) -> str:
        return {"kfac_damping": kfac_damping, "ekfac_damping": ekfac_damping}[self.damping_key]


KFAC = CurvatureStrategy("kfac", "K-FAC", ("factors",), "kfac_damping", ("pi", "mean_eigenvalue"))
EKFAC = CurvatureStrategy("ekfac", "EK-FAC", ("factors", "eigen"), "ekfac_damping", ("absolute", "mean_eigenvalue"))
STRATEGIES = {s.name: s for s in (KFAC, EKFAC)}

# influence.curvature.granularity: one outer product per token, or per example after summing its tokens
GRANULARITIES = ("token", "sequence")
# influence.curvature.eigen_average: the unit EK-FAC's corrected eigenvalues are averaged over ("auto" first)
EIGEN_AVERAGES = ("auto", "token", "example")
# influence.curvature.sequence_bias: the bias entry of a summed input, one per example or its token count
SEQUENCE_BIASES = ("one", "tokens")
# influence.loss: the per-example loss over its target tokens
LOSS_REDUCTIONS = ("mean", "sum")
# influence.seed_set.weighting: a seed group's gradient ("auto" first)
SEED_WEIGHTINGS = ("auto", "tokens", "examples")
# influence.scoring.path: the per-module contraction ("auto" first)
SCORING_PATHS = ("auto", "per_example", "token")
# influence.modules.preset: a family's MLP linears (name regexes), chosen by model_type (auto), the
# reference code's map (official, gdig.influence.modules), or none
MODULE_FAMILIES: dict[str, list[str]] = {
    "llama": [r"mlp\.(gate|up|down)_proj$"],
    "bloom": [r"mlp\.dense_h_to_4h$"],
    "gpt2": [r"mlp\.c_(fc|proj)$"],
}
MODULE_PRESETS = ("auto", "official", *MODULE_FAMILIES, "none")
# influence.seed_set.last_group: a short last seed group kept, or its seeds dropped (the reference code)
LAST_GROUPS = ("keep", "drop")
# influence.gradient_rank.method: how gradients are cut to rank r
RANK_METHODS = ("randomized", "exact")


def one_of(key: str, value: str, names: tuple[str, ...]) -> str:
    """`value` when it is one of `names`, else a ValueError naming the key and the choices."""
    if value not in names:
        raise ValueError(f"{key} must be one of {', '.join(names)}, got {value!r}")
    return value


def curvature_strategy(name_or_cfg) -> CurvatureStrategy:
    """The strategy of a name, a Curvature(-like) object with .strategy, or a whole config."""
    name = name_or_cfg
    if hasattr(name_or_cfg, "influence"):
        name = name_or_cfg.influence.curvature.strategy
    elif hasattr(name_or_cfg, "strategy"):
        name = name_or_cfg.strategy
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown curvature strategy {name!r}; known: {', '.join(STRATEGIES)}") from None
