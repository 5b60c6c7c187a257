"""Prefect tasks: thin wrappers over gdig's stage functions, one per stage.

Each task has a content-hash cache key (tasks.keys), persisted results in the workspace
(<workspace.dir>/prefect-results), retries with backoff from cfg.orchestration, and raises
StageError("<stage>: <cause>") on failure.  Tasks that read or write the DuckDB store run in
the flow's driver; only curvature_shard and score_shard run on the configured task runner's workers.
"""

from __future__ import annotations

from prefect import Task

from gdig.config import GdigConfig
from tasks import artifacts, data, evaluation, influence, model, selection
from tasks.naming import task_run_namer
from tasks.runtime import StageError, device_for, load_settings, task_runner_for

TASKS: dict[str, Task] = {
    "ingest": data.ingest,
    "prefilter": data.prefilter,
    "finetune_pool": model.finetune_pool,
    "plan_curvature": influence.plan_curvature,
    "curvature_shard": influence.curvature_shard,
    "curvature_bases": influence.curvature_bases,
    "fit_curvature": influence.fit_curvature,
    "seed_products": influence.seed_products,
    "plan_shards": influence.plan_shards,
    "score_shard": influence.score_shard,
    "merge_scores": influence.merge_scores,
    "quality": selection.quality,
    "cluster_resample": selection.cluster_resample,
    "export": selection.export,
    "summarize": selection.summarize,
    "base_model": model.base_model,
    "finetune_selection": model.finetune_selection,
    "translate": evaluation.translate,
    "metrics": evaluation.metrics,
    "report": evaluation.report,
}


class Stages:
    """Every task configured for one workspace (retries, backoff, result storage)."""

    def __init__(self, cfg: GdigConfig):
        from tasks.runtime import configure

        for name, t in TASKS.items():  # task runs named by what they work on (tasks.naming)
            setattr(self, name, configure(t, cfg).with_options(task_run_name=task_run_namer(t.name)))


def stages_for(cfg: GdigConfig) -> Stages:
    return Stages(cfg)


selection_jobs = selection.selection_jobs
reads_quality = selection.reads_quality
publish_selection = artifacts.publish_selection
publish_comparison = artifacts.publish_comparison

__all__ = ["TASKS", "Stages", "StageError", "device_for", "load_settings", "publish_comparison",
           "publish_selection", "reads_quality", "selection_jobs", "stages_for", "task_runner_for"]
