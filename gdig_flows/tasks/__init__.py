"""Prefect tasks: one per stage of the graph (gdig.graph), generated from its declaration, each a
thin call of the stage's gdig function (gdig_flows.tasks.executor.stage_task, call_stage).

Each task has a content-hash cache key from what its stage declares (gdig_flows.tasks.keys.stage_policy),
persisted results in the workspace (<workspace.dir>/prefect-results), retries with backoff from
cfg.orchestration, and raises StageError("<stage>: <cause>") on failure.  Tasks that read or
write the DuckDB store run in the flow's driver; only the mapped stages (curvature-shard,
score-shard) run on the configured task runner's workers.
"""

from __future__ import annotations

from prefect import Task

from gdig import graph
from gdig.config import GdigConfig
from gdig_flows.tasks import artifacts
from gdig_flows.tasks.executor import stage_task
from gdig_flows.tasks.naming import task_run_namer
from gdig_flows.tasks.runtime import StageError, device_for, load_settings, task_runner_for

# the task of every stage, generated from its declaration, by the stage's name (the task's name too)
TASKS: dict[str, Task] = {spec.name: stage_task(spec) for spec in graph.STAGES}


def stages_for(cfg: GdigConfig) -> dict[str, Task]:
    """Every stage's task configured for one workspace (retries, backoff, result storage) and
    named by what it works on (gdig_flows.tasks.naming)."""
    from gdig_flows.tasks.runtime import configure

    return {name: configure(t, cfg).with_options(task_run_name=task_run_namer(name)) for name, t in TASKS.items()}


publish_selection = artifacts.publish_selection
publish_comparison = artifacts.publish_comparison

__all__ = ["TASKS", "StageError", "device_for", "load_settings", "publish_comparison", "publish_selection",
           "stages_for", "task_runner_for"]
