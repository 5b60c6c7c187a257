"""Names a user can tell apart in the Prefect UI.

Flow runs: `select ws=<workspace> budgets=1000,5000` (command, workspace, budgets).
Task runs: `<stage> <what>`: the stage first (the task's name), then which strategy@budget,
shard, eval set or pass it is, e.g. `score-shard [4096, 8192)`, `translate wmt22 by gdig@1000`.
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

def _span(rows) -> str:
    try:
        return f"[{int(rows['position'].min())}, {int(rows['position'].max()) + 1})"
    except Exception:
        return ""


def _model(checkpoint: dict) -> str:
    if not isinstance(checkpoint, dict) or checkpoint.get("strategy") is None:
        return "base"
    return f"{checkpoint['strategy']}@{checkpoint.get('budget')}"


def _detail(stage: str, p: dict[str, Any]) -> str:
    cfg = p.get("cfg")
    if stage == "curvature-shard":
        return ("eigenvalues " if p.get("bases") else "factors ") + _span(p.get("rows"))
    if stage in ("plan-curvature", "curvature-bases", "fit-curvature"):
        return cfg.influence.curvature.strategy if cfg is not None else ""
    if stage == "seed-products":
        return f"{p['seed']['n_rows']} seeds" if isinstance(p.get("seed"), dict) else ""
    if stage == "plan-shards":
        return f"{p['pool']['n_rows']} candidates" if isinstance(p.get("pool"), dict) else ""
    if stage == "score-shard":
        return _span(p.get("rows"))
    if stage == "merge-scores":
        return f"{len(p.get('shards') or [])} shards"
    if stage == "quality":
        return f"gamma={cfg.selection.gamma}" if cfg is not None else ""
    if stage == "cluster-resample":
        return f"{p.get('strategy')}@{p.get('budget')}"
    if stage in ("export", "finetune-selection"):
        sel = p.get("selection") or {}
        return f"{sel.get('strategy')}@{sel.get('budget')}"
    if stage == "translate":
        return f"{(p.get('eval_set') or {}).get('name')} by {_model(p.get('checkpoint'))}"
    if stage == "metrics":
        return f"{(p.get('translation') or {}).get('eval_set')} by {_model(p.get('checkpoint'))}"
    if stage == "prepare-demo":
        return Path(str(p.get("workdir", ""))).name
    if stage in ("ingest", "finetune-pool", "base-model", "summarize-selection", "report"):
        return f"ws={workspace_label(cfg)}" if cfg is not None else ""
    return ""


def task_run_namer(stage: str) -> Callable[..., str]:
    """The task_run_name callable of a stage (Prefect passes the task run's parameters)."""

    def name(parameters: dict[str, Any]) -> str:
        try:
            detail = _detail(stage, parameters)
        except Exception:
            detail = ""
        return f"{stage} {detail}".strip() if detail else stage

    name.__name__ = f"{stage.replace('-', '_')}_run_name"
    return name
