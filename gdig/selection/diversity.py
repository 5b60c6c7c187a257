"""Diversity: K-means over gradient sketches, then even resampling across clusters.

Resampling rule (exact, deterministic): clusters are visited round-robin in a fixed
order, taking one member from each cluster that still has members left, until the
budget is filled.  A cluster that runs out simply drops out of the rotation, so its
unused quota is spread over the others one at a time.  Equivalently, every cluster gets
min(size, t) members for the largest t that fits, and the remaining slots go one each to
the next clusters in order.

Cluster order: clusters are numbered by their best member in the order of the given
candidates (for G-DIG: the quality ranking), so cluster 0 holds the best candidate and
the leftover slots of the last round go to the clusters holding the better candidates.
Within a cluster, members are taken in a seeded random order ("random", the default) or
in the given order ("quality").
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

# above this many points MiniBatchKMeans (bounded memory, one pass per batch) replaces KMeans
MINIBATCH_THRESHOLD = 20_000
# the order members are taken in within a cluster (selection.within_cluster)
WITHIN_CLUSTER = ("random", "quality")


def check_within(within: str) -> None:
    if within not in WITHIN_CLUSTER:
        raise ValueError(f"within must be 'random' or 'quality', got {within!r}")


def selection_rng(seed: int, purpose: str) -> np.random.Generator:
    """A generator for one use of the selection seed.  Salting with the purpose keeps these
    streams apart from every other `default_rng(seed)` in a workflow (e.g. the demo's noise
    injection: an unsalted seed-0 permutation there and here would pick exactly the noisy rows)."""
    return np.random.default_rng([int(seed), zlib.crc32(purpose.encode())])


def default_n_clusters(budget: int, n_points: int) -> int:
    """K = clamp(round(sqrt(budget)), 2, n_points): ~sqrt(N) clusters of ~sqrt(N) picks each."""
    if n_points <= 1:
        return max(n_points, 1)
    return int(min(max(round(np.sqrt(budget)), 2), n_points))


@dataclass
class Clustering:
    labels: np.ndarray  # [n] cluster per point, renumbered by first appearance
    distances: np.ndarray  # [n] Euclidean distance to its centroid (in the clustered space)
    centroids: np.ndarray  # [k, d] in label order
    normalize: bool

    @property
    def n_clusters(self) -> int:
        return len(self.centroids)

    def assign(self, X: np.ndarray) -> np.ndarray:
        """Nearest centroid for new points (e.g. the whole pool, to measure coverage)."""
        return nearest_centroid(X, self.centroids, self.normalize)


def nearest_centroid(X: np.ndarray, centroids: np.ndarray, normalize: bool, block: int | None = None) -> np.ndarray:
    """Index of the nearest centroid per row, in blocks so a large pool never builds an [n, k]
    matrix nor a float64 copy of all its sketches (default: ~2^22 entries, 32 MB, per block of
    either, whatever K and the sketch width are)."""
    out = np.empty(len(X), dtype=np.int64)
    width = X.shape[1] if np.ndim(X) == 2 else 1
    block = block or max(256, 2**22 // max(len(centroids), width, 1))
    c2 = (centroids**2).sum(1)[None, :]
    for start in range(0, len(X), block):
        Z = _prepare(X[start:start + block], normalize)
        out[start:start + block] = (c2 - 2 * Z @ centroids.T).argmin(1)  # |z|^2 is constant per row
    return out


def _prepare(X: np.ndarray, normalize: bool) -> np.ndarray:
    """X as float64, L2-normalised by row when asked: one new array (divided in place)."""
    if not normalize:
        return np.asarray(X, dtype=np.float64)
    Z = np.array(X, dtype=np.float64)  # always a copy: the division below must not touch X
    rows = _block_rows(Z)
    for start in range(0, len(Z), rows):  # row norms in blocks: no [n, d] temporary of squares
        part = Z[start:start + rows]
        norms = np.linalg.norm(part, axis=1, keepdims=True)
        part /= np.where(norms > 0, norms, 1.0)  # a zero sketch stays zero instead of NaN
    return Z


def _block_rows(X: np.ndarray) -> int:
    """Rows per block of a row-wise pass: ~2^22 entries (32 MB of float64) whatever the width."""
    return max(1, 2**22 // max(X.shape[1] if np.ndim(X) == 2 else 1, 1))


def _distances(Z: np.ndarray, centroids: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """|z - centroid of z| per row, in blocks (no second [n, d] array)."""
    out = np.empty(len(Z), dtype=np.float64)
    block = _block_rows(Z)
    for start in range(0, len(Z), block):
        end = start + block
        out[start:end] = np.linalg.norm(Z[start:end] - centroids[labels[start:end]], axis=1)
    return out


def cluster_sketches(X: np.ndarray, n_clusters: int, *, normalize: bool = True, seed: int = 0) -> Clustering:
    """K-means over the rows of X (in the given order; that order numbers the clusters)."""
    X = np.asarray(X)
    if X.ndim != 2 or len(X) == 0:
        raise ValueError(f"need a non-empty [n, d] sketch matrix, got shape {X.shape}")
    if not all(np.isfinite(X[i:i + _block_rows(X)]).all() for i in range(0, len(X), _block_rows(X))):
        raise ValueError("sketches contain NaN or inf values")
    n_clusters = int(min(max(n_clusters, 1), len(X)))
    Z = _prepare(X, normalize)
    from sklearn.cluster import KMeans, MiniBatchKMeans

    if len(Z) > MINIBATCH_THRESHOLD:
        km = MiniBatchKMeans(n_clusters=n_clusters, random_state=seed, n_init=3, batch_size=4096)
    else:
        km = KMeans(n_clusters=n_clusters, random_state=seed, n_init=4)
    raw = km.fit_predict(Z)
    # renumber by first appearance so the numbering follows the caller's order, not sklearn's
    _, first = np.unique(raw, return_index=True)
    old_in_order = raw[np.sort(first)]
    remap = np.full(km.cluster_centers_.shape[0], -1)
    remap[old_in_order] = np.arange(len(old_in_order))
    labels = remap[raw]
    centroids = km.cluster_centers_[old_in_order]
    distances = _distances(Z, centroids, labels)
    return Clustering(labels=labels, distances=distances, centroids=centroids, normalize=normalize)


def round_robin(labels: np.ndarray, budget: int, *, within: str = "random", seed: int = 0) -> np.ndarray:
    """Indices into `labels` picked evenly across clusters, in pick order (see module doc).

    within="random": members of each cluster in a seeded random order;
    within="quality": in index order (callers pass candidates best-first).
    """
    labels = np.asarray(labels)
    if budget < 0:
        raise ValueError(f"budget must be non-negative, got {budget}")
    check_within(within)
    rng = selection_rng(seed, "within-cluster")
    # members grouped by ascending cluster id (= the fixed visiting order), index order inside
    grouped = np.argsort(labels, kind="stable")
    _, counts = np.unique(labels, return_counts=True)
    depth = np.empty(len(labels), dtype=np.int64)  # a member's turn inside its cluster
    start = 0
    for n in counts:
        members = grouped[start:start + n]
        if within == "random":
            members = rng.permutation(members)
        depth[members] = np.arange(n)
        start += n
    # round r takes the r-th member of every cluster that has one, clusters in id order
    order = np.lexsort((labels, depth))
    return order[: min(budget, len(labels))].astype(np.int64)


def quotas(cluster_sizes: list[int], budget: int) -> list[int]:
    """How many members each cluster gets under the round-robin rule (for reports and tests)."""
    labels = np.repeat(np.arange(len(cluster_sizes)), cluster_sizes)
    picked = labels[round_robin(labels, budget, within="quality")]
    return np.bincount(picked, minlength=len(cluster_sizes)).tolist()
