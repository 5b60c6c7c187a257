"""The run log and progress artifacts of a task: gdig.progress events plugged into Prefect.

`watch(what)` around a stage body sends every gdig.progress event of that body to the task
run's log (one line per event: done/total, rate, ETA; about every GDIG_PROGRESS_INTERVAL s)
and moves one progress artifact per tracked loop while it runs.  These lines go to the
Prefect API only: the terminal keeps its tqdm bars and does not get them twice.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Any, Iterator

from gdig.progress import ProgressEvent, reporting

_API_LOGGER = "gdig.run-log"


def run_log() -> logging.LoggerAdapter | None:
    """A logger whose records go to the current flow/task run's log in the Prefect API, not
    to the console (None outside a run)."""
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger
    from prefect.logging.handlers import APILogHandler

    try:
        extra = dict(get_run_logger().extra)
    except MissingContextError:
        return None
    base = logging.getLogger(_API_LOGGER)
    if not any(isinstance(h, APILogHandler) for h in base.handlers):
        base.addHandler(APILogHandler())
        base.setLevel(logging.INFO)
        base.propagate = False
    return logging.LoggerAdapter(base, extra)


class PrefectProgress:
    """A gdig.progress reporter: log lines + a progress artifact per tracked loop."""

    def __init__(self, what: str | None = None):
        from prefect.runtime import task_run

        self.what = what or task_run.name or "gdig"
        self.log = run_log()
        self.artifacts: dict[str, Any] = {}

    def __call__(self, event: ProgressEvent) -> None:
        if self.log is not None:
            self.log.info(event.line())
        if event.fraction is None:
            return
        from prefect.artifacts import create_progress_artifact, update_progress_artifact

        pct = 100.0 * event.fraction
        if event.stage not in self.artifacts:
            self.artifacts[event.stage] = create_progress_artifact(
                pct, description=f"{self.what}: {event.stage} ({event.total} {event.unit})")
        else:
            update_progress_artifact(self.artifacts[event.stage], pct)


@contextmanager
def watch(what: str | None = None) -> Iterator[None]:
    """Report the progress of the stage body to the Prefect run (see the module doc); `what`
    labels its progress artifacts (default: the task run's name)."""
    from gdig_flows.tasks.runtime import progress_bars

    if not progress_bars():
        from gdig.progress import quiet_libraries

        quiet_libraries()
    with reporting(PrefectProgress(what)):
        yield


def log_to_run(text: str) -> None:
    """Write text to the current run's log in the Prefect API only (not the console)."""
    log = run_log()
    if log is not None:
        log.info(text)
