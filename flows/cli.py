"""What `gdig select|run|demo` call (entry-point group "gdig.flows"): run a flow, return
a plain result with the flow run's id and where to see it."""

from __future__ import annotations

import time
from typing import Any


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


def _run(flow, **params) -> dict[str, Any]:
    t0 = time.time()
    state = flow(**params, return_state=True)
    where = _where(state.state_details.flow_run_id)
    if not state.is_completed():
        try:
            state.result()
        except Exception as err:  # the stage error (e.g. "fit-curvature: ValueError: ...")
            return {"ok": False, "error": str(err), "state": state.name, **where, "seconds": time.time() - t0}
        return {"ok": False, "error": state.message or state.name, "state": state.name, **where,
                "seconds": time.time() - t0}
    return {"ok": True, "result": state.result(), "state": state.name, **where, "seconds": time.time() - t0}


def select(config: str, overrides: list[str] | None = None) -> dict[str, Any]:
    from flows.select import select_flow

    return _run(select_flow, config=str(config), overrides=list(overrides or []))


def run(config: str, overrides: list[str] | None = None) -> dict[str, Any]:
    from flows.run import run_flow

    return _run(run_flow, config=str(config), overrides=list(overrides or []))


def demo(workdir: str, seed: int = 0, overrides: list[str] | None = None) -> dict[str, Any]:
    from flows.demo import demo_flow

    return _run(demo_flow, workdir=str(workdir), seed=seed, overrides=list(overrides or []))
