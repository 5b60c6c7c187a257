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

from dataclasses import dataclass
from typing import Callable

import numpy as np

from gdig.selection.diversity import check_within, default_n_clusters, round_robin, selection_rng

DEFAULT_DROP_MARGIN = 0.15


def default_k(allocation: str, budget: int, n_points: int) -> int:
    """K when selection.n_clusters is unset: ~sqrt(budget) for the quota allocations; for
    cover_best as many clusters as picks (capped by the points), since its floors are what buy
    coverage (measured on the real-data benchmark: benchmarks/README.md)."""
    return allocation_of(allocation).k(budget, n_points)


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


@dataclass(frozen=True)
class Clusters:
    """What an allocation sees: members' labels, cluster sizes, and (the quality-aware ones)
    each cluster's mean quality percentile, which clusters are kept, members' percentiles."""

    labels: np.ndarray
    sizes: np.ndarray
    mean_q: np.ndarray | None = None
    kept: np.ndarray | None = None
    pr: np.ndarray | None = None


def _even(c: Clusters, budget: int) -> np.ndarray:
    picked = c.labels[round_robin(c.labels, budget, within="quality")]
    return np.bincount(picked, minlength=len(c.sizes)).astype(np.int64)


def _drop_low(c: Clusters, budget: int) -> np.ndarray:
    return proportional_quotas(c.sizes * c.kept, c.sizes * c.kept, budget)


def _floors(c: Clusters, budget: int) -> tuple[np.ndarray, int]:
    """One pick per kept cluster (the best clusters when they outnumber the budget), and the
    picks left for the rest."""
    total = int(min(budget, (c.sizes * c.kept).sum()))
    q = np.zeros(len(c.sizes), dtype=np.int64)
    order = [k for k in np.argsort(-c.mean_q, kind="stable") if c.kept[k] and c.sizes[k] > 0]
    q[order[:total]] = 1
    return q, total - int(q.sum())


def _cover(c: Clusters, budget: int) -> np.ndarray:
    q, rest = _floors(c, budget)
    if rest > 0:
        q += proportional_quotas(c.sizes * c.kept, (c.sizes - 1) * c.kept, rest)
    return q


def _cover_best(c: Clusters, budget: int) -> np.ndarray:
    q, rest = _floors(c, budget)
    if rest > 0:  # the rest to the best members not yet taken, across kept clusters
        q += _best_remaining(c.labels, c.pr, c.kept, len(c.sizes), rest)
    return q


@dataclass(frozen=True)
class Allocation:
    name: str  # the selection.allocation value
    quotas: Callable[[Clusters, int], np.ndarray]  # (clusters, budget) -> picks per cluster
    reads_quality: bool = True  # needs one quality score per member
    reads_drop_margin: bool = False  # leaves clusters more than drop_margin below the mean out
    k: Callable[[int, int], int] = default_n_clusters  # (budget, points) -> K when n_clusters is unset


ALLOCATION_REGISTRY: dict[str, Allocation] = {a.name: a for a in (
    Allocation("even", _even, reads_quality=False),
    Allocation("size", lambda c, budget: proportional_quotas(c.sizes, c.sizes, budget), reads_quality=False),
    Allocation("size_quality", lambda c, budget: proportional_quotas(c.sizes * c.mean_q, c.sizes, budget)),
    Allocation("drop_low", _drop_low, reads_drop_margin=True),
    Allocation("cover", _cover, reads_drop_margin=True),
    Allocation("cover_best", _cover_best, reads_drop_margin=True, k=lambda budget, n: int(max(min(budget, n), 1))),
)}
ALLOCATIONS = tuple(ALLOCATION_REGISTRY)


def allocation_of(name: str) -> Allocation:
    try:
        return ALLOCATION_REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown allocation {name!r}; one of {', '.join(ALLOCATIONS)}") from None


def cluster_quotas(labels, budget: int, allocation: str = "even", quality=None,
                   drop_margin: float = DEFAULT_DROP_MARGIN) -> np.ndarray:
    """Picks per cluster id (0..K-1) under `allocation`; `quality` (one score per member,
    higher = better) is needed by every allocation but even and size."""
    labels = np.asarray(labels)
    entry = allocation_of(allocation)
    sizes = np.bincount(labels) if len(labels) else np.zeros(0, dtype=np.int64)
    if not entry.reads_quality:
        return entry.quotas(Clusters(labels, sizes), budget)
    if quality is None or len(quality) != len(labels):
        raise ValueError(f"allocation {allocation!r} needs one quality score per clustered candidate")
    from gdig.selection.quality import percentile_rank

    pr = percentile_rank(quality)
    mean_q = np.bincount(labels, weights=pr, minlength=len(sizes)) / np.maximum(sizes, 1)
    kept = mean_q >= pr.mean() - drop_margin
    q = entry.quotas(Clusters(labels, sizes, mean_q, kept, pr), budget)
    return _fill_from_dropped(q, sizes, kept, mean_q, budget) if entry.reads_drop_margin else q


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
    check_within(within)
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
