"""What `gdig select|run|demo` call (entry-point group "gdig.flows"): run a flow, return
a plain result with the flow run's id and where to see it."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

# The temporary server Prefect starts when no PREFECT_API_URL is set runs a telemetry
# heartbeat that can hit "database is locked" on its SQLite file and print a traceback
# in the middle of a gdig run; gdig sends no analytics unless the user opts in.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def _where(flow_run_id) -> dict[str, Any]:
    """The UI address of a flow run, or where its state lives when no server is configured."""
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL, PREFECT_API_URL, PREFECT_HOME, PREFECT_UI_URL

    api, ui = PREFECT_API_URL.value(), PREFECT_UI_URL.value()
    if api:
        return {"flow_run_id": str(flow_run_id), "ui": f"{ui}/runs/flow-run/{flow_run_id}" if ui else None,
                "api": api}
    db = PREFECT_API_DATABASE_CONNECTION_URL.value() or f"sqlite:///{PREFECT_HOME.value()}/prefect.db"
    return {"flow_run_id": str(flow_run_id), "ui": None, "api": None,
            "note": f"no PREFECT_API_URL: ran on a temporary local Prefect server; the run's state is in "
                    f"{db} (see it with `prefect server start`, then open the UI's Runs page)"}


def task_runs(flow_run_id) -> list:
    """Every task run of a flow run and of its subflows (any depth), in start order."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterParentFlowRunId
    from prefect.client.schemas.sorting import FlowRunSort, TaskRunSort

    with get_client(sync_client=True) as client:
        ids, frontier = [flow_run_id], [flow_run_id]
        while frontier:
            children = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=frontier)),
                limit=200, sort=FlowRunSort.START_TIME_ASC)
            frontier = [c.id for c in children]
            ids += frontier
        runs, offset = [], 0
        while True:
            page = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)),
                                         limit=200, offset=offset, sort=TaskRunSort.EXPECTED_START_TIME_ASC)
            runs += page
            offset += len(page)
            if len(page) < 200:
                return runs


def stage_timings(flow_run_id) -> list[dict[str, Any]]:
    """Per stage, in first-start order: task runs, how many were Cached, and their summed run
    time in seconds (parallel shards overlap, so the sum can exceed the elapsed time)."""
    from gdig_flows.tasks.naming import stage_of

    stages: dict[str, dict[str, Any]] = {}
    for tr in task_runs(flow_run_id):
        if tr.state is not None and tr.state.state_details.child_flow_run_id is not None:
            continue  # the stand-in task run of a subflow
        name = stage_of(tr.name)
        st = stages.setdefault(name, {"stage": name, "runs": 0, "cached": 0, "seconds": 0.0})
        st["runs"] += 1
        st["cached"] += int(tr.state is not None and tr.state.name == "Cached")
        st["seconds"] += tr.total_run_time.total_seconds() if tr.total_run_time else 0.0
    return list(stages.values())


class _NoTraceback(logging.Filter):
    """On the console only (the API log handler, i.e. the UI, keeps them): log records without
    their tracebacks; the CLI prints the one-line cause itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


def quiet_console(debug: bool = False) -> None:
    """Prefect's console log goes to stdout (stderr is for gdig's error line), without
    tracebacks unless `debug`."""
    import sys

    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger()] + [v for v in logging.Logger.manager.loggerDict.values()
                                       if isinstance(v, logging.Logger)]
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, PrefectConsoleHandler) and handler.stream is sys.stderr:
                handler.setStream(sys.stdout)
                handler.console.file = sys.stdout
                if not debug and not any(isinstance(f, _NoTraceback) for f in handler.filters):
                    handler.addFilter(_NoTraceback())


def _failure(err: BaseException) -> dict[str, Any]:
    """What the CLI prints for a failed run: a BadInput's own message (as --no-prefect prints
    it; exit 2), else the stage error ("fit-curvature: ValueError: ..."; exit 1)."""
    from gdig_flows.tasks.runtime import describe_failure

    bad_input, message = describe_failure(err)
    return {"bad_input": bad_input, "error": message}


def _run(flow, debug: bool = False, **params) -> dict[str, Any]:
    from gdig_flows.flows.server import PrefectUnavailable, ensure_api

    t0 = time.time()
    quiet_console(debug)
    try:
        ensure_api()  # a temporary server gets the time it needs; no API at all: one line, exit 2
    except PrefectUnavailable as err:
        if debug:
            raise
        return {"ok": False, "prefect_unavailable": True, "error": str(err), "seconds": time.time() - t0}
    state = flow(**params, return_state=True)
    where = _where(state.state_details.flow_run_id)
    if not state.is_completed():
        try:
            state.result()
        except Exception as err:  # the stage error (e.g. "fit-curvature: ValueError: ...")
            return {"ok": False, **_failure(err), "state": state.name, **where, "seconds": time.time() - t0}
        return {"ok": False, "bad_input": False, "error": state.message or state.name, "state": state.name,
                **where, "seconds": time.time() - t0}
    seconds = time.time() - t0
    try:
        timings = stage_timings(state.state_details.flow_run_id)
    except Exception:  # timings are a nicety; never fail a finished run over them
        timings = []
    return {"ok": True, "result": state.result(), "state": state.name, **where, "seconds": seconds,
            "timings": timings}


def select(config: str, overrides: list[str] | None = None, debug: bool = False) -> dict[str, Any]:
    from gdig_flows.flows.select import select_flow

    return _run(select_flow, debug, config=str(config), overrides=list(overrides or []))


def run(config: str, overrides: list[str] | None = None, debug: bool = False) -> dict[str, Any]:
    from gdig_flows.flows.run import run_flow

    return _run(run_flow, debug, config=str(config), overrides=list(overrides or []))


def demo(workdir: str, seed: int = 0, overrides: list[str] | None = None, debug: bool = False) -> dict[str, Any]:
    from gdig_flows.flows.demo import demo_flow

    return _run(demo_flow, debug, workdir=str(workdir), seed=seed, overrides=list(overrides or []))
