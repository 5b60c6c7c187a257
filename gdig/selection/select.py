"""One entry point for every strategy: `select(strategy, budget, influence, sketches, ...)`.

G-DIG = Eq. 4 quality filter (D_hq, γ fixed or "auto") -> K-means over the sketches of D_hq ->
resampling across clusters by an allocation (the paper's even round-robin, or quality-aware
quotas: see allocation.py); when |D_hq| <= budget all of D_hq is taken and the rest is filled
from the next-ranked candidates (reason "filled").  The baselines (random, quality, loss,
diversity, full) go through the same function and produce the same output frame.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from gdig.selection.allocation import DEFAULT_DROP_MARGIN, allocate, default_k
from gdig.selection.baselines import diversity_pick, full_pick, loss_pick, random_pick
from gdig.selection.diversity import Clustering, cluster_sketches
from gdig.selection.quality import auto_gamma, hq_target, passes_rules, rank_by_quality, select_top

log = logging.getLogger(__name__)

STRATEGIES = ("gdig", "random", "quality", "diversity", "full", "loss")
NEEDS_SKETCHES = ("gdig", "diversity")
USES_QUALITY = ("gdig", "quality")  # the strategies that read γ and the quality score

OUTPUT_COLUMNS = ["example_id", "position", "rank", "reason", "cluster", "helped_fraction", "mean_influence", "label"]


@dataclass
class Selection:
    strategy: str
    budget: int  # the requested budget ("full": the pool size)
    rows: pd.DataFrame  # OUTPUT_COLUMNS, in rank order (rank 0 = first pick)
    n_pool: int
    n_high_quality: int | None = None  # |D_hq| (strategies that use the quality filter)
    n_closing_rejected: int | None = None  # candidates the closing-token rule put outside D_hq, last
    n_gain_rejected: int | None = None  # candidates the source-gain rule put outside D_hq, last
    gamma: float | None = None  # the γ used (chosen by "auto", or the fixed one)
    clustering: Clustering | None = None
    clustered_ids: list[str] = field(default_factory=list)  # example ids the clustering was fit on
    warnings: list[str] = field(default_factory=list)

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


def select(
    strategy: str,
    budget: int,
    influence: pd.DataFrame,
    sketches: np.ndarray | None = None,
    *,
    gamma: float | str = 1.0,
    n_clusters: int | None = None,
    normalize: bool = True,
    within_cluster: str = "random",
    seed: int = 0,
    quality: str = "paper",
    hq_multiple: float = 2.0,
    allocation: str = "even",
    drop_margin: float = DEFAULT_DROP_MARGIN,
    n_seed_groups: int | None = None,
    closing_loss_max: float | None = None,
    source_gain_min: float | None = None,
) -> Selection:
    """Select `budget` candidates from the pool with `strategy`.

    influence: one row per candidate in pool order, columns example_id, position,
      helped_fraction, mean (and loss, grad_norm, label where present).  sketches: [n, d] rows
      aligned with `influence` (needed by "gdig" and "diversity").
    gamma: a number (Eq. 4's fixed threshold) or "auto" (the largest γ on the grid of
      `n_seed_groups` at which |D_hq| >= hq_multiple × budget).
    closing_loss_max: the closing-token rule of gdig and quality (nats; None: off): candidates
      whose last target token costs more are outside D_hq and rank last (quality.py).
    source_gain_min: the source-gain rule of gdig and quality (nats per target token; None:
      off; needs column source_free_loss): candidates whose loss falls by less when the model
      sees the source are outside D_hq and rank last, with the closing rule's rejects.
    """
    pool = _checked_pool(strategy, budget, influence, sketches)
    n = len(pool)
    warnings: list[str] = []
    if budget > n and strategy != "full":
        warnings.append(f"budget {budget} exceeds the pool ({n} candidates): selecting all {n}")
    if strategy not in USES_QUALITY:
        return _baseline(strategy, budget, pool, sketches, warnings, n_clusters=n_clusters, normalize=normalize,
                         seed=seed)

    ranked, g, n_hq, fitting = _quality_ranking(pool, budget, gamma, quality, hq_multiple, n_seed_groups,
                                                closing_loss_max, source_gain_min)
    n_rejected = int((~ranked["closing_ok"]).sum())
    n_gain_rejected = int((~ranked["gain_ok"]).sum())
    if strategy == "quality":
        top, warn = select_top(ranked, budget, fitting)
        frame = _frame(pool, top["row"].to_numpy(), top["reason"].to_numpy())
        sel = Selection("quality", budget, frame, n_pool=n, n_high_quality=n_hq, gamma=g, warnings=warn)
    else:
        sel = _gdig(pool, ranked, budget, g, n_hq, fitting, sketches, warnings, n_clusters=n_clusters,
                    normalize=normalize, within_cluster=within_cluster, seed=seed, allocation=allocation,
                    drop_margin=drop_margin)
    sel.n_closing_rejected = None if closing_loss_max is None else n_rejected
    sel.n_gain_rejected = None if source_gain_min is None else n_gain_rejected
    if source_gain_min is not None and n_gain_rejected > n / 2:
        msg = (f"the source-gain rule (gain < {source_gain_min:g} nats per target token) ranks {n_gain_rejected} "
               f"of {n} candidates last: does the prompt template show the model the source? "
               "selection.source_gain_min: null switches the rule off")
        log.warning(msg)
        sel.warnings.append(msg)
    if closing_loss_max is not None and n_rejected > n / 2:
        msg = (f"the closing-token rule (closing loss > {closing_loss_max:g} nats) ranks {n_rejected} of {n} "
               "candidates last: the model may not have learnt where a target ends (pool finetuning?); "
               "selection.closing_loss_max: null switches the rule off")
        log.warning(msg)
        sel.warnings.append(msg)
    return sel


def _checked_pool(strategy: str, budget: int, influence: pd.DataFrame, sketches: np.ndarray | None) -> pd.DataFrame:
    """The pool frame (0-based index), after checking the strategy, budget and sketches."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; one of {', '.join(STRATEGIES)}")
    if budget < 1:
        raise ValueError(f"budget must be a positive integer, got {budget}")
    pool = influence.reset_index(drop=True)
    n = len(pool)
    if n == 0:
        raise ValueError("the candidate pool is empty")
    if strategy in NEEDS_SKETCHES:
        if sketches is None or len(sketches) != n:
            got = "none" if sketches is None else f"{len(sketches)}"
            raise ValueError(
                f"strategy {strategy!r} needs one gradient sketch per candidate ({n}); got {got} "
                "(enable influence.scoring.sketch)"
            )
    return pool


def _baseline(strategy: str, budget: int, pool: pd.DataFrame, sketches: np.ndarray | None, warnings: list[str], *,
              n_clusters: int | None, normalize: bool, seed: int) -> Selection:
    """The strategies that ignore the quality score: full, random, loss, diversity."""
    n = len(pool)
    if strategy == "full":
        return Selection("full", n, _frame(pool, full_pick(n), "full"), n_pool=n)
    if strategy == "random":
        rows = random_pick(n, budget, seed)
        return Selection("random", budget, _frame(pool, rows, "random"), n_pool=n, warnings=warnings)
    if strategy == "loss":
        return Selection("loss", budget, _frame(pool, loss_pick(pool, budget), "loss"), n_pool=n, warnings=warnings)
    rows, clustering = diversity_pick(sketches, budget, n_clusters=n_clusters, normalize=normalize, seed=seed)
    frame = _frame(pool, rows, "diversity", clustering.labels[rows])
    return Selection("diversity", budget, frame, n_pool=n, clustering=clustering,
                     clustered_ids=list(pool["example_id"]), warnings=warnings)


def _quality_ranking(pool: pd.DataFrame, budget: int, gamma: float | str, quality: str, hq_multiple: float,
                     n_seed_groups: int | None, closing_loss_max: float | None = None,
                     source_gain_min: float | None = None) -> tuple[pd.DataFrame, float, int, float | None]:
    """Eq. 4 and the quality ranking: (ranked pool, the γ used, |D_hq|, and with a fixed γ that
    leaves D_hq short of the budget, the γ that would have held it (for the warning)).  γ
    counts only the candidates that pass the closing-token and source-gain rules: the others
    never enter D_hq."""
    hf = pool["helped_fraction"].to_numpy()[passes_rules(pool, closing_loss_max, source_gain_min)]
    fixed = gamma != "auto"
    if not fixed and not n_seed_groups:
        raise ValueError("gamma 'auto' needs n_seed_groups (the number of seed products scored against)")
    g = float(gamma) if fixed else auto_gamma(hf, n_seed_groups, hq_target(budget, hq_multiple))
    ranked = rank_by_quality(pool, g, quality, closing_loss_max, source_gain_min)
    n_hq = int(ranked["high_quality"].sum())
    fitting = auto_gamma(hf, n_seed_groups, budget) if fixed and n_seed_groups and n_hq < budget else None
    return ranked, g, n_hq, fitting


def _gdig(pool: pd.DataFrame, ranked: pd.DataFrame, budget: int, g: float, n_hq: int, fitting: float | None,
          sketches: np.ndarray, warnings: list[str], *, n_clusters: int | None, normalize: bool,
          within_cluster: str, seed: int, allocation: str, drop_margin: float) -> Selection:
    """Cluster D_hq (in quality order, so cluster 0 holds the best candidate) and resample across
    the clusters; a D_hq smaller than the budget is topped up from the next-ranked candidates."""
    hq = ranked[ranked["high_quality"]]
    hq_rows = hq["row"].to_numpy()
    clustering = None
    if n_hq:
        k = n_clusters or default_k(allocation, budget, n_hq)
        clustering = cluster_sketches(sketches[hq_rows], k, normalize=normalize, seed=seed)
        picks = allocate(clustering.labels, budget, allocation=allocation, quality=hq["quality"].to_numpy(),
                         within=within_cluster, seed=seed, drop_margin=drop_margin)
        rows, clusters = hq_rows[picks], clustering.labels[picks]
    else:
        rows, clusters = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    reasons = ["quality"] * len(rows)
    if n_hq < budget:
        top, warn = select_top(ranked, budget, fitting)  # D_hq is the prefix of the ranking: the rest fills
        warnings = warn
        fill = top.loc[~top["high_quality"], "row"].to_numpy()
        rows = np.concatenate([rows, fill])
        clusters = np.concatenate([clusters, np.full(len(fill), -1)])
        reasons += ["filled"] * len(fill)
    cluster_col = [None if c < 0 else int(c) for c in clusters]
    frame = _frame(pool, rows, np.asarray(reasons, dtype=object), cluster_col)
    return Selection("gdig", budget, frame, n_pool=len(pool), n_high_quality=n_hq, gamma=g,
                     clustering=clustering, clustered_ids=list(pool["example_id"].to_numpy()[hq_rows]),
                     warnings=warnings)
