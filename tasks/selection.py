"""Selection: quality (Eq. 4, step 5), cluster + resample per strategy x budget (step 6), export."""

from __future__ import annotations

from prefect import task

from gdig.config import GdigConfig
from tasks.keys import own_key, stage_policy
from tasks.runtime import open_store, stage

SELECTION = ("gdig.pipeline", "gdig.selection.select", "gdig.selection.quality",
             "gdig.selection.diversity", "gdig.selection.baselines", "gdig.selection.outputs")


@task(name="quality", cache_policy=stage_policy(
    "quality", sections=("selection.gamma",), modules=("gdig.selection.quality",),
))
def quality(cfg: GdigConfig, scoring: dict) -> dict:
    """D_hq: candidates that help at least a fraction gamma of the seeds."""
    from gdig.selection.quality import rank_by_quality

    with stage("quality"), open_store(cfg) as store:
        ranked = rank_by_quality(store.influence(scoring["scoring_id"]), cfg.selection.gamma)
        n_hq = int(ranked["high_quality"].sum())
    return {"scoring_id": scoring["scoring_id"], "pool_size": len(ranked), "n_high_quality": n_hq,
            "gamma": cfg.selection.gamma, "key": own_key()}


def selection_jobs(cfg: GdigConfig) -> list[tuple[str, int]]:
    """(strategy, budget) pairs of the config ("full" runs once)."""
    from gdig.pipeline import selection_jobs as jobs

    return jobs(cfg)


@task(name="cluster-resample", cache_policy=stage_policy(
    "cluster_resample",
    sections=("selection.gamma", "selection.n_clusters", "selection.normalize",
              "selection.within_cluster", "selection.seed"),
    modules=SELECTION,
))
def cluster_resample(cfg: GdigConfig, scoring: dict, quality: dict, strategy: str, budget: int) -> dict:
    """One selection: K-means over D_hq's sketches, even resampling across clusters (or a baseline)."""
    from gdig.pipeline import selection_step

    with stage(f"cluster-resample {strategy}-{budget}"), open_store(cfg) as store:
        sid = selection_step(cfg, store, scoring["scoring_id"], strategy, budget)
        size = len(store.selection(sid))
    return {"selection_id": sid, "strategy": strategy, "budget": budget, "size": size, "key": own_key()}


@task(name="export", cache_policy=stage_policy("export", sections=(), modules=SELECTION))
def export(cfg: GdigConfig, selection: dict) -> dict:
    """The selected training set as JSONL (input schema + score fields)."""
    from gdig.pipeline import export_step

    with stage(f"export {selection['strategy']}-{selection['budget']}"), open_store(cfg) as store:
        path = export_step(cfg, store, selection["selection_id"])
    return {**selection, "path": path, "key": own_key()}


@task(name="summarize-selection", cache_policy=stage_policy(
    "summarize_selection", sections=("selection",), modules=SELECTION + ("gdig.selection.summary",),
))
def summarize(cfg: GdigConfig, scoring: dict, exports: list[dict]) -> dict:
    """Pool, D_hq, clusters and per-selection counts (and noise figures when labels exist)."""
    from gdig.pipeline import summary_step

    with stage("summarize-selection"), open_store(cfg) as store:
        summary = summary_step(cfg, store, scoring["scoring_id"], [e["selection_id"] for e in exports],
                               {e["selection_id"]: e["path"] for e in exports})
    return {"summary": summary.to_dict(), "text": summary.render(), "key": own_key()}
