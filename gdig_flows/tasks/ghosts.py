"""No ghost runs: a flow run whose process was killed (kill -9, a stopped serve.py, a lost
machine) cannot report its end and would stay Running on the Prefect server forever.

Two mechanisms mark such runs Crashed, with a message: every gdig flow records its process in
the workspace and, when it starts, crashes the workspace's runs whose process is gone
(watch_this_run, from gdig_flows.tasks.runtime.load_settings); and Prefect's own zombie detection, flow
run heartbeats + an automation that gdig creates once per server (ensure_ghost_automation).
"""

from __future__ import annotations

import os
from pathlib import Path

from gdig.config import GdigConfig
from gdig.workspace import Workspace

RUNS_DIR = "prefect-runs"  # Workspace.prefect_runs: one record per flow run this workspace started


def _process_started(pid: int) -> float | None:
    """Start time of a live process (None: no such process): pid + start time names one process,
    even after the pid is reused."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def _gone(record: dict) -> bool:
    """The process that ran a recorded flow run is gone (only decidable on its own host)."""
    import socket

    if record.get("host") != socket.gethostname():
        return False
    started = _process_started(int(record["pid"]))
    return started is None or abs(started - float(record["started"])) > 1.0


def crash_ghost_runs(cfg: GdigConfig) -> list[str]:
    """Mark Crashed (with a message) every flow run this workspace recorded whose process is gone
    while the server still shows it unfinished; drop the records of finished runs.  Returns the
    ids marked.  Runs started on another host are left to that host (or the heartbeat automation)."""
    import json

    from prefect.client.orchestration import get_client

    folder = Workspace(cfg).prefect_runs
    marked = []
    records = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if not records:
        return marked
    with get_client(sync_client=True) as client:
        for path in records:
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
                if not _gone(record):
                    continue
                run = client.read_flow_run(record["flow_run_id"])
            except Exception:  # unreadable record, or a run this server does not know: forget it
                path.unlink(missing_ok=True)
                continue
            if run.state is not None and not run.state.is_final():
                message = (f"the gdig process (pid {record['pid']} on {record['host']}) running this flow "
                           f"run is gone (killed?); marked Crashed by gdig when it next started against "
                           f"the workspace {cfg.workspace.db}")
                marked += _crash(client, run, message)
            path.unlink(missing_ok=True)
    return marked


def _crash(client, run, message: str) -> list[str]:
    """Mark a flow run, its unfinished task runs and its unfinished parent flow runs Crashed
    (a subflow's process is its parent's: a `gdig run` killed in select leaves both Running)."""
    from prefect.client.schemas.filters import (FlowRunFilter, FlowRunFilterId, TaskRunFilter,
                                                TaskRunFilterState, TaskRunFilterStateType)
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    marked = []
    while run is not None and run.state is not None and not run.state.is_final():
        unfinished = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])),
            task_run_filter=TaskRunFilter(state=TaskRunFilterState(type=TaskRunFilterStateType(
                any_=[StateType.RUNNING, StateType.PENDING, StateType.SCHEDULED]))))
        for task_run in unfinished:
            client.set_task_run_state(task_run.id, Crashed(message=message), force=True)
        client.set_flow_run_state(run.id, Crashed(message=message), force=True)
        marked.append(str(run.id))
        parent = client.read_task_run(run.parent_task_run_id) if run.parent_task_run_id else None
        run = client.read_flow_run(parent.flow_run_id) if parent is not None and parent.flow_run_id else None
    return marked


def watch_this_run(cfg: GdigConfig) -> None:
    """At the start of a flow: crash the workspace's ghost runs, then record this flow run (id,
    host, pid, process start time) so that a later start can tell if its process died."""
    import json
    import socket

    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return  # not inside a flow run: nothing to watch (and no server to ask)
    crash_ghost_runs(cfg)
    try:
        ensure_ghost_automation()
    except Exception as err:  # e.g. a server without automations: the workspace check still holds
        import logging

        logging.getLogger(__name__).warning("gdig: no heartbeat automation on this Prefect server: %s", err)
    folder = Workspace(cfg).prefect_runs
    folder.mkdir(parents=True, exist_ok=True)
    pid = os.getpid()
    record = {"flow_run_id": str(ctx.flow_run.id), "flow": ctx.flow.name if ctx.flow else None,
              "host": socket.gethostname(), "pid": pid, "started": _process_started(pid)}
    tmp = folder / f".{ctx.flow_run.id}.tmp"
    tmp.write_text(json.dumps(record), encoding="utf-8")
    tmp.replace(folder / f"{ctx.flow_run.id}.json")


GHOST_AUTOMATION = "gdig: crash flow runs whose heartbeats stopped"
GDIG_FLOWS = ("gdig-select", "gdig-run", "gdig-demo")


def ensure_ghost_automation() -> str | None:
    """Prefect's own zombie-run detection, for gdig's flows: every flow run sends a heartbeat
    event (settings.flows.heartbeat_frequency, 180 s by default); this automation, created once
    per server, marks a gdig flow run Crashed when no heartbeat (nor a final state) follows the
    last one within 3 heartbeat periods.  It catches runs killed on any host, without gdig
    starting again.  Returns the automation's id (None: heartbeats are off)."""
    from datetime import timedelta

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
    from prefect.settings import get_current_settings

    period = get_current_settings().flows.heartbeat_frequency
    if period is None:
        return None
    with get_client(sync_client=True) as client:
        existing = client.read_automations_by_name(name=GHOST_AUTOMATION)
        if existing:
            return str(existing[0].id)
        window = 3 * max(period, 30)
        return str(client.create_automation(AutomationCore(
            name=GHOST_AUTOMATION,
            description="Created by gdig (gdig_flows/tasks/ghosts.py): a gdig flow run that stopped sending heartbeats "
                        "(its process was killed) is marked Crashed.",
            trigger=EventTrigger(
                after={"prefect.flow-run.heartbeat"},
                expect={"prefect.flow-run.heartbeat", "prefect.flow-run.Completed", "prefect.flow-run.Failed",
                        "prefect.flow-run.Cancelled", "prefect.flow-run.Crashed"},
                match={"prefect.resource.id": ["prefect.flow-run.*"]},
                match_related={"prefect.resource.role": "flow", "prefect.resource.name": list(GDIG_FLOWS)},
                for_each={"prefect.resource.id"},
                posture=Posture.Proactive, threshold=1, within=timedelta(seconds=window)),
            actions=[ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"no heartbeat for {window} s: the process running this gdig flow run is gone "
                        f"(killed?); marked Crashed by the automation {GHOST_AUTOMATION!r}")],
        )))
