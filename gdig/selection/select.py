"""One entry point for every strategy: `select(strategy, budget, influence, sketches, settings)`.

G-DIG = Eq. 4 quality filter (D_hq, γ fixed or "auto") -> K-means over the sketches of D_hq ->
resampling across clusters by an allocation (the paper's even round-robin, or quality-aware
quotas: see allocation.py); when |D_hq| <= budget all of D_hq is taken and the rest is filled
from the next-ranked candidates (reason "filled").  The baselines (random, quality, loss,
diversity, full) go through the same function and produce the same output frame.

Each strategy is one entry of `SELECTION_STRATEGIES`: the settings it reads (its selection id
and its stage's cache key follow exactly those), whether it needs sketches, whether it reads
the quality ranking (γ, the quality score, the D_hq rules), and how it picks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from gdig.selection.allocation import DEFAULT_DROP_MARGIN, allocate, default_k
from gdig.selection.baselines import diversity_pick, full_pick, loss_pick, random_pick
from gdig.selection.diversity import Clustering, cluster_sketches
from gdig.selection.quality import auto_gamma, hq_target, rank_by_quality, select_top
from gdig.selection.rules import (HQ_RULES, checked, default_thresholds, passes_rules, rejected_counts,
                                  rejected_names)

log = logging.getLogger(__name__)

OUTPUT_COLUMNS = ["example_id", "position", "rank", "reason", "cluster", "helped_fraction", "mean_influence", "label"]


@dataclass(frozen=True)
class SelectSettings:
    """The selection settings (gdig.config.SelectionConfig's, less budgets and strategies); the
    D_hq rules as one mapping, threshold by key of gdig.selection.rules.HQ_RULES.

    The defaults here are gdig's, the ones `gdig select` runs: SelectionConfig takes its defaults
    from this class, so `select()` from Python and the CLI select alike.  A preset
    (gdig.presets, e.g. `paper`) is an overlay: `SelectSettings.preset("paper")`."""

    gamma: float | str = "auto"
    n_clusters: int | None = None
    normalize: bool = True
    within_cluster: str = "quality"
    seed: int = 0
    quality: str = "loss"  # the defaults of quality, allocation and the rules were chosen on
    hq_multiple: float = 2.0  # benchmarks/selection_quality.py (benchmarks/README.md)
    allocation: str = "drop_low"
    drop_margin: float = DEFAULT_DROP_MARGIN
    rules: Mapping[str, float | None] = field(default_factory=default_thresholds)

    @classmethod
    def of(cls, value: "SelectSettings | Mapping[str, Any] | None",
           base: "SelectSettings | None" = None) -> "SelectSettings":
        """Settings from themselves, None (the defaults) or a mapping laid over `base` (default:
        the defaults); a rule's key (e.g. closing_loss_max) may stand beside the others, and a
        rule the mapping does not name keeps its threshold in `base`."""
        if isinstance(value, SelectSettings):
            return value
        base = base or cls()
        if value is None:
            return base
        value = dict(value)
        rules = {**base.rules, **value.pop("rules", {}), **{k: value.pop(k) for k in list(value) if k in HQ_RULES}}
        unknown = sorted(set(value) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown selection setting(s) {unknown}")
        return replace(base, **value, rules=checked(rules))

    @classmethod
    def from_config(cls, sel_cfg) -> "SelectSettings":
        """The settings of a gdig.config.SelectionConfig."""
        names = [f.name for f in fields(cls) if f.name != "rules"]
        return cls.of({**{n: getattr(sel_cfg, n) for n in names}, **{k: getattr(sel_cfg, k) for k in HQ_RULES}})

    @classmethod
    def preset(cls, name: str) -> "SelectSettings":
        """The defaults under a preset's selection overlay (gdig.presets), as `preset: NAME` in a config."""
        from gdig.presets import preset_section

        names = {f.name for f in fields(cls)} | set(HQ_RULES)
        return cls.of({k: v for k, v in preset_section(name, "selection").items() if k in names})


@dataclass
class Selection:
    strategy: str
    budget: int  # the requested budget ("full": the pool size)
    rows: pd.DataFrame  # OUTPUT_COLUMNS, in rank order (rank 0 = first pick)
    n_pool: int
    n_high_quality: int | None = None  # |D_hq| (strategies that use the quality filter)
    gamma: float | None = None  # the γ used (chosen by "auto", or the fixed one)
    clustering: Clustering | None = None
    clustered_ids: list[str] = field(default_factory=list)  # example ids the clustering was fit on
    warnings: list[str] = field(default_factory=list)
    rejected: dict[str, int] = field(default_factory=dict)  # per D_hq rule that is on: candidates it ranks last

    def __getattr__(self, name: str):
        if name in rejected_names():  # n_closing_rejected, ...: None while the rule is off
            return self.__dict__.get("rejected", {}).get(name)
        raise AttributeError(name)

    def counts(self) -> dict[str, int]:
        return self.rows["reason"].value_counts().to_dict()

    def cluster_frame(self) -> pd.DataFrame | None:
        """example_id, cluster, distance of the clustered points (for Store.add_clusters)."""
        if self.clustering is None:
            return None
        return pd.DataFrame({
            "example_id": self.clustered_ids,
            "cluster": self.clustering.labels.astype(np.int64),
            "distance": self.clustering.distances,
        })


@dataclass
class Job:
    """One strategy x budget over a checked pool: what a strategy's pick reads."""

    budget: int
    pool: pd.DataFrame
    sketches: np.ndarray | None
    settings: SelectSettings
    warnings: list[str]


@dataclass
class Ranking:
    """Eq. 4 and the quality ranking of a pool: the ranked pool, the γ used, |D_hq|, and with a
    fixed γ that leaves D_hq short of the budget, the γ that would have held it."""

    ranked: pd.DataFrame
    gamma: float
    n_hq: int
    fitting: float | None


def _frame(pool: pd.DataFrame, rows: np.ndarray, reasons, clusters=None) -> pd.DataFrame:
    """Selection frame from pool row indices in pick order."""
    picked = pool.iloc[rows]
    return pd.DataFrame({
        "example_id": picked["example_id"].to_numpy(),
        "position": picked["position"].to_numpy().astype(np.int64),
        "rank": np.arange(len(rows), dtype=np.int64),
        "reason": reasons if not np.isscalar(reasons) else [reasons] * len(rows),
        "cluster": pd.array(clusters if clusters is not None else [None] * len(rows), dtype="Int64"),
        "helped_fraction": picked["helped_fraction"].to_numpy() if "helped_fraction" in picked else np.nan,
        "mean_influence": picked["mean"].to_numpy() if "mean" in picked else np.nan,
        "label": picked["label"].to_numpy() if "label" in picked else None,
    })[OUTPUT_COLUMNS]


def select(strategy: str, budget: int, influence: pd.DataFrame, sketches: np.ndarray | None = None,
           settings: SelectSettings | Mapping[str, Any] | None = None, n_seed_groups: int | None = None
           ) -> Selection:
    """Select `budget` candidates from the pool with `strategy`.

    influence: one row per candidate in pool order, columns example_id, position,
      helped_fraction, mean (and loss, grad_norm, label where present).  sketches: [n, d] rows
      aligned with `influence` (needed by "gdig" and "diversity").
    settings: SelectSettings or a mapping of them.  gamma: a number (Eq. 4's fixed threshold)
      or "auto" (the largest γ on the grid of `n_seed_groups` at which |D_hq| >= hq_multiple ×
      budget).  rules: the D_hq rules of gdig and quality (gdig.selection.rules, threshold by
      key; None or absent: off): candidates that fail one are outside D_hq and rank last.
    """
    entry = strategy_of(strategy)
    settings = SelectSettings.of(settings)
    pool = _checked_pool(entry, budget, influence, sketches)
    n = len(pool)
    warnings: list[str] = []
    if budget > n and entry.budgeted:
        warnings.append(f"budget {budget} exceeds the pool ({n} candidates): selecting all {n}")
    job = Job(budget, pool, sketches, settings, warnings)
    if not entry.reads_quality:
        return entry.pick(job, None)
    ranking = _quality_ranking(job, n_seed_groups)
    sel = entry.pick(job, ranking)
    sel.rejected = rejected_counts(ranking.ranked, settings.rules)
    for key in reversed(HQ_RULES):  # the warnings list the table's rules last first
        t, n_rejected = settings.rules.get(key), sel.rejected.get(HQ_RULES[key].count, 0)
        if t is not None and n_rejected > n / 2:
            msg = HQ_RULES[key].too_many.format(t=t, n=n_rejected, total=n)
            log.warning(msg)
            sel.warnings.append(msg)
    return sel


def _checked_pool(entry: "SelectionStrategy", budget: int, influence: pd.DataFrame,
                  sketches: np.ndarray | None) -> pd.DataFrame:
    """The pool frame (0-based index), after checking the budget and sketches."""
    if budget < 1:
        raise ValueError(f"budget must be a positive integer, got {budget}")
    pool = influence.reset_index(drop=True)
    n = len(pool)
    if n == 0:
        raise ValueError("the candidate pool is empty")
    if entry.needs_sketches:
        if sketches is None or len(sketches) != n:
            got = "none" if sketches is None else f"{len(sketches)}"
            raise ValueError(
                f"strategy {entry.name!r} needs one gradient sketch per candidate ({n}); got {got} "
                "(enable influence.scoring.sketch)"
            )
    return pool


def _full(job: Job, _: Ranking | None) -> Selection:
    n = len(job.pool)
    return Selection("full", n, _frame(job.pool, full_pick(n), "full"), n_pool=n)


def _random(job: Job, _: Ranking | None) -> Selection:
    rows = random_pick(len(job.pool), job.budget, job.settings.seed)
    return Selection("random", job.budget, _frame(job.pool, rows, "random"), n_pool=len(job.pool),
                     warnings=job.warnings)


def _loss(job: Job, _: Ranking | None) -> Selection:
    return Selection("loss", job.budget, _frame(job.pool, loss_pick(job.pool, job.budget), "loss"),
                     n_pool=len(job.pool), warnings=job.warnings)


def _diversity(job: Job, _: Ranking | None) -> Selection:
    s = job.settings
    rows, clustering = diversity_pick(job.sketches, job.budget, n_clusters=s.n_clusters, normalize=s.normalize,
                                      seed=s.seed)
    frame = _frame(job.pool, rows, "diversity", clustering.labels[rows])
    return Selection("diversity", job.budget, frame, n_pool=len(job.pool), clustering=clustering,
                     clustered_ids=list(job.pool["example_id"]), warnings=job.warnings)


def _quality(job: Job, r: Ranking) -> Selection:
    top, warn = select_top(r.ranked, job.budget, r.fitting)
    frame = _frame(job.pool, top["row"].to_numpy(), top["reason"].to_numpy())
    return Selection("quality", job.budget, frame, n_pool=len(job.pool), n_high_quality=r.n_hq, gamma=r.gamma,
                     warnings=warn)


def _quality_ranking(job: Job, n_seed_groups: int | None) -> Ranking:
    """Eq. 4 and the quality ranking.  γ counts only the candidates that pass the D_hq rules:
    the others never enter D_hq."""
    s = job.settings
    hf = job.pool["helped_fraction"].to_numpy()[passes_rules(job.pool, s.rules)]
    fixed = s.gamma != "auto"
    if not fixed and not n_seed_groups:
        raise ValueError("gamma 'auto' needs n_seed_groups (the number of seed products scored against)")
    g = float(s.gamma) if fixed else auto_gamma(hf, n_seed_groups, hq_target(job.budget, s.hq_multiple))
    ranked = rank_by_quality(job.pool, g, s.quality, s.rules)
    n_hq = int(ranked["high_quality"].sum())
    fitting = auto_gamma(hf, n_seed_groups, job.budget) if fixed and n_seed_groups and n_hq < job.budget else None
    return Ranking(ranked, g, n_hq, fitting)


def _gdig(job: Job, r: Ranking) -> Selection:
    """Cluster D_hq (in quality order, so cluster 0 holds the best candidate) and resample across
    the clusters; a D_hq smaller than the budget is topped up from the next-ranked candidates."""
    s, budget, warnings = job.settings, job.budget, job.warnings
    hq = r.ranked[r.ranked["high_quality"]]
    hq_rows = hq["row"].to_numpy()
    clustering = None
    if r.n_hq:
        k = s.n_clusters or default_k(s.allocation, budget, r.n_hq)
        clustering = cluster_sketches(job.sketches[hq_rows], k, normalize=s.normalize, seed=s.seed)
        picks = allocate(clustering.labels, budget, allocation=s.allocation, quality=hq["quality"].to_numpy(),
                         within=s.within_cluster, seed=s.seed, drop_margin=s.drop_margin)
        rows, clusters = hq_rows[picks], clustering.labels[picks]
    else:
        rows, clusters = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    reasons = ["quality"] * len(rows)
    if r.n_hq < budget:
        top, warnings = select_top(r.ranked, budget, r.fitting)  # D_hq is the prefix of the ranking: the rest fills
        fill = top.loc[~top["high_quality"], "row"].to_numpy()
        rows = np.concatenate([rows, fill])
        clusters = np.concatenate([clusters, np.full(len(fill), -1)])
        reasons += ["filled"] * len(fill)
    cluster_col = [None if c < 0 else int(c) for c in clusters]
    frame = _frame(job.pool, rows, np.asarray(reasons, dtype=object), cluster_col)
    return Selection("gdig", budget, frame, n_pool=len(job.pool), n_high_quality=r.n_hq, gamma=r.gamma,
                     clustering=clustering, clustered_ids=list(job.pool["example_id"].to_numpy()[hq_rows]),
                     warnings=warnings)


# -- the strategies ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class SelectionStrategy:
    name: str  # a selection.strategies value
    pick: Callable[[Job, Ranking | None], Selection]  # the ranking: for the strategies that read quality
    reads: tuple[str, ...] = ()  # the selection settings its result follows (its id, its stage's key)
    needs_sketches: bool = False  # one gradient sketch per candidate
    reads_quality: bool = False  # γ, the quality score and the D_hq rules: ranked by Eq. 4 first
    budgeted: bool = True  # False: takes the whole pool whatever the budget, so it runs once


# what the strategies that read the quality ranking read, the D_hq rules included
QUALITY_READS = ("gamma", "hq_multiple", "quality", *HQ_RULES)

SELECTION_STRATEGIES: dict[str, SelectionStrategy] = {e.name: e for e in (
    SelectionStrategy("gdig", _gdig, QUALITY_READS + ("allocation", "drop_margin", "n_clusters", "normalize",
                                                      "within_cluster", "seed"), needs_sketches=True,
                      reads_quality=True),
    SelectionStrategy("random", _random, ("seed",)),
    SelectionStrategy("quality", _quality, QUALITY_READS, reads_quality=True),
    SelectionStrategy("diversity", _diversity, ("n_clusters", "normalize", "seed"), needs_sketches=True),
    SelectionStrategy("full", _full, budgeted=False),
    SelectionStrategy("loss", _loss),
)}
STRATEGIES = tuple(SELECTION_STRATEGIES)


def strategy_of(name: str) -> SelectionStrategy:
    try:
        return SELECTION_STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; one of {', '.join(STRATEGIES)}") from None
