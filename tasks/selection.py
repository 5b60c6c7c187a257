"""Selection: quality (Eq. 4, stage 5), cluster + resample per strategy x budget (6), export,
summary, over gdig.stages.selection."""

from __future__ import annotations

from prefect import task

from gdig.config import GdigConfig
from tasks.executor import call_stage
from tasks.keys import stage_policy


@task(name="quality", cache_policy=stage_policy("quality"))
def quality(cfg: GdigConfig, scoring: dict, source_free: dict | None = None) -> dict:
    """D_hq per budget: the γ used and how many candidates help at least that fraction of seeds."""
    return call_stage("quality", cfg, scoring=scoring, source_free=source_free)


@task(name="cluster-resample", cache_policy=stage_policy("cluster-resample"))
def cluster_resample(cfg: GdigConfig, scoring: dict, quality: dict | None, strategy: str, budget: int,
                     source_free: dict | None = None) -> dict:
    """One selection: K-means over D_hq's sketches, resampling across clusters (or a baseline)."""
    return call_stage("cluster-resample", cfg, f"cluster-resample {strategy}-{budget}", scoring=scoring,
                      quality=quality, source_free=source_free, strategy=strategy, budget=budget)


@task(name="export", cache_policy=stage_policy("export"))
def export(cfg: GdigConfig, selection: dict) -> dict:
    """The selected training set as JSONL (input schema + score fields)."""
    return call_stage("export", cfg, f"export {selection['strategy']}-{selection['budget']}", selection=selection)


@task(name="summarize-selection", cache_policy=stage_policy("summarize-selection"))
def summarize(cfg: GdigConfig, scoring: dict, prefilter: dict, exports: list[dict]) -> dict:
    """Pool, D_hq, clusters and per-selection counts (and noise figures when labels exist)."""
    return call_stage("summarize-selection", cfg, scoring=scoring, prefilter=prefilter, exports=exports)
