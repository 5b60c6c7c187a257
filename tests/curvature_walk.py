"""The curvature of a workspace in this process, for tests: the graph's curvature walk (plan, a
partial per shard, eigenbases and a second pass when the strategy needs them, shard-order sums)
on the plain executor, so the very numbers the mapped flow computes."""

from __future__ import annotations

from gdig.graph import fit_curvature
from gdig.pipeline import PlainExecutor


def fit_curvature_here(cfg, store, checkpoint_path: str, checkpoint_id: str, progress: bool = True,
                       dataset: str = "pool", device: str | None = None, n_rows: int | None = None) -> str:
    """The curvature id; ``n_rows``: the reference pool (its first rows; default: all of them)."""
    if n_rows is None:
        n_rows = len(store.dataset_ids(dataset))
    ex = PlainExecutor(cfg, store, progress=progress, device=device)
    checkpoint = {"checkpoint_id": checkpoint_id, "path": checkpoint_path}
    return fit_curvature(ex, checkpoint, {"name": dataset, "n_rows": n_rows})["curvature_id"]
