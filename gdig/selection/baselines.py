"""Baselines of the same size as a G-DIG selection: random, diversity-only, full pool.

Each returns row indices into the pool (pool order) in pick order; `gdig.selection.select`
turns them into a selection the same way it does for G-DIG, so comparisons are fair.
Quality-only is `quality.select_top` (top-N of the Eq. 4 ranking, no clustering).
"""

from __future__ import annotations

import numpy as np

from gdig.selection.diversity import Clustering, cluster_sketches, default_n_clusters, selection_rng


def random_pick(n_pool: int, budget: int, seed: int = 0) -> np.ndarray:
    """A seeded uniform sample without replacement.  Smaller budgets are prefixes of larger ones
    for the same seed (one permutation), so random baselines are nested across budgets."""
    return selection_rng(seed, "random-baseline").permutation(n_pool)[: min(budget, n_pool)].astype(np.int64)


def loss_pick(pool, budget: int) -> np.ndarray:
    """The `budget` candidates with the lowest own target loss at the scoring checkpoint (the
    same prompt and masking as scoring; ties by pool position): the simplest competitor of
    influence, computed in the scoring pass at no extra cost."""
    if "loss" not in pool or pool["loss"].isna().any():
        raise ValueError("strategy 'loss' needs the candidates' own loss from the scoring pass")
    order = np.lexsort((pool["position"].to_numpy(), pool["loss"].to_numpy()))
    return order[: min(budget, len(order))].astype(np.int64)


def full_pick(n_pool: int) -> np.ndarray:
    return np.arange(n_pool, dtype=np.int64)


def diversity_pick(
    sketches: np.ndarray, budget: int, *, n_clusters: int | None = None, normalize: bool = True, seed: int = 0,
) -> tuple[np.ndarray, Clustering]:
    """K-means over the whole pool (no quality filter), then a sample stratified by cluster: quotas
    proportional to cluster size, members drawn at random within each cluster (quality is not used
    at all).  Even quotas would hand small clusters, often of noise, the share of large clean ones
    (measured: noisier than random); proportional ones keep random's make-up and cover every
    cluster of a meaningful size."""
    from gdig.selection.allocation import allocate

    k = n_clusters or default_n_clusters(budget, len(sketches))
    clustering = cluster_sketches(sketches, k, normalize=normalize, seed=seed)
    return allocate(clustering.labels, budget, allocation="size", within="random", seed=seed), clustering
