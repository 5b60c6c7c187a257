"""Names a user can tell apart in the Prefect UI.

Flow runs: `select ws=<workspace> budgets=1000,5000` (command, workspace, budgets).
Task runs: `<stage> <what>`: the stage first (the task's name), then which strategy@budget,
shard, eval set or pass it is, e.g. `score-shard [4096, 8192)`, `translate wmt22 by gdig@1000`
(each stage's `label` in gdig.graph.STAGES says what).
Artifact keys: `gdig-<workspace>-<what>` (lowercase letters, digits, dashes).
A name function never raises: a run is never refused over its name.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

from gdig.config import GdigConfig
from gdig.runinfo import budgets_label, slug, workspace_label


def stage_of(task_run_name: str) -> str:
    """The stage of a task run name: `translate wmt22 by base` -> `translate` (and Prefect's
    default `quality-a1b` -> `quality`)."""
    if " " in task_run_name:
        return task_run_name.split(" ", 1)[0]
    return re.sub(r"-[0-9a-f]{3}$", "", task_run_name)


def artifact_key(cfg: GdigConfig, *what: Any) -> str:
    """`gdig-<workspace>-<what...>`, at most 100 characters of [a-z0-9-]."""
    return slug("-".join(["gdig", workspace_label(cfg), *map(str, what)]), limit=100)


# -- flow runs -------------------------------------------------------------------------------------

def _flow_name(command: str) -> Callable[[], str]:
    def name() -> str:
        from prefect.runtime import flow_run

        params = dict(flow_run.parameters or {})
        try:
            if command == "demo":
                return f"demo {Path(params.get('workdir', '')).name} seed={params.get('seed', 0)}"
            from gdig.config import load_config

            cfg = load_config(params["config"], list(params.get("overrides") or []))
            return f"{command} ws={workspace_label(cfg)} budgets={budgets_label(cfg)}"
        except Exception:  # an unreadable config fails in the flow body, with its message
            return f"{command} {Path(str(params.get('config', '?'))).stem}"

    name.__name__ = f"{command}_run_name"
    return name


select_run_name, run_run_name, demo_run_name = _flow_name("select"), _flow_name("run"), _flow_name("demo")


# -- task runs -------------------------------------------------------------------------------------

def task_run_namer(stage: str) -> Callable[..., str]:
    """The task_run_name callable of a stage (Prefect passes the task run's parameters): the
    stage's declared run name (gdig.graph.Stage.run_name), or for the demo's preparation its
    workdir."""
    from gdig import graph

    def name(parameters: dict[str, Any]) -> str:
        if stage == "prepare-demo":
            return f"{stage} {Path(str(parameters.get('workdir', ''))).name}".strip()
        return graph.stage(stage).run_name(parameters)

    name.__name__ = f"{stage.replace('-', '_')}_run_name"
    return name
