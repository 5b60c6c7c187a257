"""Curvature strategies: what K-FAC and EK-FAC each need and compute.

A strategy says which passes over the curvature rows it needs (K-FAC: the factor sums; EK-FAC:
those, then a second pass that sums the corrected eigenvalues in the factors' eigenbases), which
files a fit writes besides the per-shard partials (EK-FAC: the eigenbases between the passes),
how the partials combine into the fitted curvature, and which damping rule its inverse uses.
Callers ask the strategy instead of testing its name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # no torch import at module load: the graph declaration imports this
    from gdig.influence.curvature import Curvature, CurvaturePartial


@dataclass(frozen=True)
class CurvatureStrategy:
    name: str  # the influence.curvature.strategy value
    label: str  # how messages name it
    passes: tuple[str, ...]  # partial kinds summed over the rows, in pass order
    damping_key: str  # the influence.curvature key naming its damping rule

    @property
    def eigen_pass(self) -> bool:
        """Whether it needs a second pass over the rows, in eigenbases fitted between the passes."""
        return "eigen" in self.passes

    @property
    def writes_bases(self) -> bool:
        return self.eigen_pass

    def damping_rule(self, kfac_damping: str, ekfac_damping: str) -> str:
        return {"kfac_damping": kfac_damping, "ekfac_damping": ekfac_damping}[self.damping_key]

    def combine(self, factors: list["CurvaturePartial"], bases: "Curvature | None" = None,
                eigen: list["CurvaturePartial"] | None = None) -> "Curvature":
        """The fitted curvature from the shards' partials (in shard order)."""
        from gdig.influence.curvature import factors_from_partials, with_eigenvalues

        if not self.eigen_pass:
            return factors_from_partials(factors)
        if bases is None or not eigen:
            raise ValueError(f"{self.label} curvature needs the eigenbases file and the eigenvalue partials")
        n = (sum(p.n_examples for p in factors), sum(p.n_tokens for p in factors))
        if (bases.n_examples, bases.n_tokens) != n:
            raise ValueError(f"the eigenbases ({bases.n_examples} examples, {bases.n_tokens} tokens) were not "
                             f"computed from these factor partials ({n[0]} examples, {n[1]} tokens)")
        return with_eigenvalues(bases, eigen)


KFAC = CurvatureStrategy("kfac", "K-FAC", ("factors",), "kfac_damping")
EKFAC = CurvatureStrategy("ekfac", "EK-FAC", ("factors", "eigen"), "ekfac_damping")
STRATEGIES = {s.name: s for s in (KFAC, EKFAC)}


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
