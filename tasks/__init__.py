"""Prefect tasks: one per stage of the graph (gdig.graph), each a thin call of the stage's gdig
function (tasks.executor.call_stage).

Each task has a content-hash cache key from what its stage declares (tasks.keys.stage_policy),
persisted results in the workspace (<workspace.dir>/prefect-results), retries with backoff from
cfg.orchestration, and raises StageError("<stage>: <cause>") on failure.  Tasks that read or
write the DuckDB store run in the flow's driver; only the mapped stages (curvature-shard,
score-shard) run on the configured task runner's workers.
"""

from __future__ import annotations

from prefect import Task

from gdig import graph
from gdig.config import GdigConfig
from tasks import artifacts, data, evaluation, influence, model, selection
from tasks.naming import task_run_namer
from tasks.runtime import StageError, device_for, load_settings, task_runner_for

# the task of every stage, by the stage's name (the task's name too)
TASKS: dict[str, Task] = {t.name: t for t in (
    data.ingest, data.prefilter, model.finetune_pool, influence.plan_curvature, influence.curvature_shard,
    influence.curvature_bases, influence.fit_curvature, influence.seed_products, influence.plan_shards,
    influence.score_shard, influence.merge_scores, influence.source_free_loss, selection.quality,
    selection.cluster_resample, selection.export, selection.summarize, model.base_model, model.finetune_selection,
    evaluation.translate, evaluation.metrics, evaluation.report,
)}
missing = sorted(set(graph.BY_NAME) ^ set(TASKS))
if missing:  # a stage declared without a task, or a task of no declared stage
    raise ImportError(f"tasks and gdig.graph disagree on the stages {missing}")


def stages_for(cfg: GdigConfig) -> dict[str, Task]:
    """Every stage's task configured for one workspace (retries, backoff, result storage) and
    named by what it works on (tasks.naming)."""
    from tasks.runtime import configure

    return {name: configure(t, cfg).with_options(task_run_name=task_run_namer(name)) for name, t in TASKS.items()}


publish_selection = artifacts.publish_selection
publish_comparison = artifacts.publish_comparison

__all__ = ["TASKS", "StageError", "device_for", "load_settings", "publish_comparison", "publish_selection",
           "stages_for", "task_runner_for"]
