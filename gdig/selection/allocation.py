"""How many picks each cluster gets, and in which order the picks are made.

- ``even``: the paper's resampling: clusters take turns, one member each, until the budget is
  filled (a cluster that runs out drops out).  It hands a small cluster as many rows as a large
  one, so small clusters of noise get the share of large clean ones.
- ``size``: quotas proportional to cluster size (largest remainder, capped by the size).
- ``size_quality``: proportional to size × the cluster's mean quality (percentile ranks within
  the clustered set, so in (0, 1]).
- ``drop_low``: clusters whose mean quality percentile is more than ``drop_margin`` below the
  clustered set's (0.5) are left out; quotas proportional to size over the rest.  When the kept
  clusters cannot fill the budget, the dropped ones fill it, best cluster first.
- ``cover``: the clusters ``drop_low`` keeps, each with at least one pick (its first member),
  the rest of the budget proportional to size; when the budget is smaller than the number of
  kept clusters, the best clusters (by mean quality) get one each.  More clusters touched than
  ``drop_low``, which hands a small kept cluster a share that rounds to nothing.
- ``cover_best``: the same one pick per kept cluster, the rest of the budget to the best
  remaining members of the kept clusters, in quality order: the quality ranking with a floor of
  one pick per cluster, so coverage is bought with the fewest swaps of good rows for worse ones.

Whatever the quotas, picks are interleaved: round r takes the r-th member of every cluster
whose quota exceeds r, clusters in id order, so a selection's prefix is still spread out.
Within a cluster, members come in the given order (``quality``: callers pass them best first)
or in a seeded random order (``random``).
"""

from __future__ import annotations

import numpy as np

from gdig.selection.diversity import default_n_clusters, round_robin, selection_rng

ALLOCATIONS = ("even", "size", "size_quality", "drop_low", "cover", "cover_best")
READS_DROP_MARGIN = ("drop_low", "cover", "cover_best")  # the allocations that leave clusters out
DEFAULT_DROP_MARGIN = 0.15


def default_k(allocation: str, budget: int, n_points: int) -> int:
    """K when selection.n_clusters is unset: ~sqrt(budget) for the quota allocations; for
    cover_best as many clusters as picks (capped by the points), since its floors are what buy
    coverage (measured on the real-data benchmark: benchmarks/README.md)."""
    if allocation == "cover_best":
        return int(max(min(budget, n_points), 1))
    return default_n_clusters(budget, n_points)


def proportional_quotas(weights, caps, budget: int) -> np.ndarray:
    """Integer quotas summing to min(budget, Σ caps), proportional to `weights` where no cap
    binds: capped clusters are fixed at their cap and the rest re-shared (water-filling);
    remainders go by largest fractional part, ties to the lower index.  Zero-weight clusters
    take picks only when the others cannot hold the budget, in index order."""
    w = np.asarray(weights, dtype=np.float64)
    caps = np.asarray(caps, dtype=np.int64)
    if len(w) != len(caps) or (w < 0).any() or (caps < 0).any() or budget < 0:
        raise ValueError("need non-negative weights and caps of the same length, and a non-negative budget")
    total = int(min(budget, caps.sum()))
    q = np.zeros(len(w), dtype=np.int64)
    free = (caps > 0) & (w > 0)
    remaining = total
    while remaining > 0 and free.any():
        share = remaining * w * free / w[free].sum()
        over = free & (share >= caps - q)
        if over.any():  # these hit their cap: fix them, re-share the rest
            remaining -= int((caps[over] - q[over]).sum())
            q[over] = caps[over]
            free &= ~over
            continue
        base = np.floor(share).astype(np.int64)
        q += base
        left = remaining - int(base.sum())
        frac = np.where(free, share - base, -1.0)
        for i in np.lexsort((np.arange(len(w)), -frac))[:left]:
            q[i] += 1
        remaining = 0
    for i in range(len(w)):  # zero-weight clusters fill what the others could not hold
        if remaining <= 0:
            break
        take = int(min(caps[i] - q[i], remaining))
        q[i] += take
        remaining -= take
    return q


def cluster_quotas(labels, budget: int, allocation: str = "even", quality=None,
                   drop_margin: float = DEFAULT_DROP_MARGIN) -> np.ndarray:
    """Picks per cluster id (0..K-1) under `allocation`; `quality` (one score per member,
    higher = better) is needed by every allocation but even and size."""
    labels = np.asarray(labels)
    if allocation not in ALLOCATIONS:
        raise ValueError(f"unknown allocation {allocation!r}; one of {', '.join(ALLOCATIONS)}")
    sizes = np.bincount(labels) if len(labels) else np.zeros(0, dtype=np.int64)
    if allocation == "even":
        picked = labels[round_robin(labels, budget, within="quality")]
        return np.bincount(picked, minlength=len(sizes)).astype(np.int64)
    if allocation == "size":
        return proportional_quotas(sizes, sizes, budget)
    if quality is None or len(quality) != len(labels):
        raise ValueError(f"allocation {allocation!r} needs one quality score per clustered candidate")
    from gdig.selection.quality import percentile_rank

    pr = percentile_rank(quality)
    mean_q = np.bincount(labels, weights=pr, minlength=len(sizes)) / np.maximum(sizes, 1)
    if allocation == "size_quality":
        return proportional_quotas(sizes * mean_q, sizes, budget)
    kept = mean_q >= pr.mean() - drop_margin
    if allocation == "drop_low":
        q = proportional_quotas(sizes * kept, sizes * kept, budget)
    else:  # cover, cover_best: one pick per kept cluster first (the best clusters when they outnumber the budget)
        total = int(min(budget, (sizes * kept).sum()))
        q = np.zeros(len(sizes), dtype=np.int64)
        order = [c for c in np.argsort(-mean_q, kind="stable") if kept[c] and sizes[c] > 0]
        q[order[:total]] = 1
        rest = total - int(q.sum())
        if rest > 0 and allocation == "cover":
            q += proportional_quotas(sizes * kept, (sizes - 1) * kept, rest)
        elif rest > 0:  # cover_best: the rest to the best members not yet taken, across kept clusters
            q += _best_remaining(labels, pr, kept, len(sizes), rest)
    return _fill_from_dropped(q, sizes, kept, mean_q, budget)


def _best_remaining(labels: np.ndarray, pr: np.ndarray, kept: np.ndarray, k: int, n: int) -> np.ndarray:
    """Per cluster, how many of the `n` best members of the kept clusters fall in it once each
    cluster's best member (its floor pick) is set aside; ties go to the lower index."""
    order = np.lexsort((np.arange(len(pr)), -pr))  # best first
    order = order[kept[labels[order]]]
    _, floors = np.unique(labels[order], return_index=True)
    return np.bincount(labels[np.delete(order, floors)[:n]], minlength=k).astype(np.int64)


def _fill_from_dropped(q: np.ndarray, sizes: np.ndarray, kept: np.ndarray, mean_q: np.ndarray,
                       budget: int) -> np.ndarray:
    """Dropped clusters fill what the kept ones cannot hold, best cluster first."""
    short = int(min(budget, sizes.sum())) - int(q.sum())
    for c in np.argsort(-mean_q, kind="stable"):
        if short <= 0:
            break
        if not kept[c]:
            take = int(min(sizes[c], short))
            q[c] += take
            short -= take
    return q


def interleave(labels, quotas, *, within: str = "random", seed: int = 0) -> np.ndarray:
    """Indices into `labels` that fill each cluster's quota, in pick order (see module doc)."""
    labels = np.asarray(labels)
    quotas = np.asarray(quotas, dtype=np.int64)
    if within not in ("random", "quality"):
        raise ValueError(f"within must be 'random' or 'quality', got {within!r}")
    rng = selection_rng(seed, "within-cluster")
    rounds, members_of = [], []
    for c in range(len(quotas)):
        members = np.flatnonzero(labels == c)
        if within == "random":
            members = rng.permutation(members)
        members = members[: quotas[c]]
        members_of.append(members)
        rounds.append(np.arange(len(members)))
    if not members_of:
        return np.zeros(0, dtype=np.int64)
    idx = np.concatenate(members_of)
    depth = np.concatenate(rounds)
    cluster = labels[idx] if len(idx) else idx
    return idx[np.lexsort((cluster, depth))].astype(np.int64)


def allocate(labels, budget: int, *, allocation: str = "even", quality=None, within: str = "random",
             seed: int = 0, drop_margin: float = DEFAULT_DROP_MARGIN) -> np.ndarray:
    """The picks of the diversity step: quotas per cluster, then interleaved (pick order)."""
    quotas = cluster_quotas(labels, budget, allocation, quality, drop_margin)
    return interleave(labels, quotas, within=within, seed=seed)
