"""What every gdig task shares: config loading, the store handle, stage errors, the
workspace's result storage and retry settings, task runners and device assignment."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from prefect import Task
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from gdig.config import GdigConfig, load_config
from gdig.errors import BadInput


def progress_bars() -> bool:
    """tqdm bars inside tasks (in the worker's stderr); GDIG_PROGRESS=0 turns them off."""
    return os.environ.get("GDIG_PROGRESS", "1") != "0"


class StageError(RuntimeError):
    """A stage failed; the message starts with the stage name and gives the cause."""

    @classmethod
    def of(cls, stage: str, cause: BaseException) -> "StageError":
        return cls(f"{stage}: {type(cause).__name__}: {cause}")

    @property
    def stage(self) -> str:
        return str(self).split(":", 1)[0]


class BadInputError(StageError):
    """A stage failed on something a retry cannot fix (gdig.errors.BadInput: bad input or
    config, a missing model or dataset): its task fails at once and the CLI exits 2."""

    @property
    def cause(self) -> str:
        """The message of the BadInput itself (what `--no-prefect` prints)."""
        return str(self.__cause__) if self.__cause__ is not None else str(self).split(": ", 2)[-1]


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Run a stage body: a BadInput becomes BadInputError (never retried), any other failure
    StageError(name, cause) (Prefect retries it)."""
    try:
        yield
    except StageError:
        raise
    except BadInput as err:
        raise BadInputError.of(name, err) from err
    except Exception as err:
        raise StageError.of(name, err) from err


def describe_failure(err: BaseException) -> tuple[bool, str]:
    """(is it bad input, the line to print) for what a failed flow raised: a BadInput's own
    message (what --no-prefect prints), else the stage error."""
    from gdig.errors import bad_input_cause

    if isinstance(err, BadInputError):
        return True, err.cause
    bad = bad_input_cause(err)
    return bad is not None, str(bad if bad is not None else err)


def retry_unless_bad_input(task: Task, task_run: Any, state: Any) -> bool:
    """Prefect retry condition: retry transient failures, never a BadInputError."""
    try:
        state.result()
    except BadInputError:
        return False
    except BaseException:
        return True
    return True


def load_settings(config: str | Path, overrides: list[str] | None = None) -> GdigConfig:
    """The flow parameters (config path + KEY=VALUE overrides) as a validated config.  Inside a
    flow run it also watches the run (watch_this_run): the workspace's runs whose process died
    are marked Crashed, and this one is recorded."""
    cfg = load_config(config, list(overrides or []))
    watch_this_run(cfg)
    return cfg


@contextmanager
def open_store(cfg: GdigConfig) -> Iterator[Any]:
    """The workspace store; only tasks that run in the flow's driver process open it."""
    from gdig.store import Store

    with Store(cfg.workspace.db) as store:
        yield store


def results_dir(cfg: GdigConfig) -> Path:
    """Prefect results (the cache) live in the workspace, beside the artifacts they refer to."""
    return Path(cfg.workspace.dir) / "prefect-results"


def configure(task: Task, cfg: GdigConfig) -> Task:
    """The task with this workspace's retries, backoff (never for a BadInputError) and persisted
    result storage."""
    path = results_dir(cfg)
    path.mkdir(parents=True, exist_ok=True)
    delays = list(cfg.orchestration.retry_delay_seconds) or [0.0]
    return task.with_options(
        retries=cfg.orchestration.retries,
        retry_delay_seconds=delays if len(delays) > 1 else delays[0],
        retry_condition_fn=retry_unless_bad_input,
        persist_result=True,
        result_storage=path.resolve(),  # a Path: a LocalFileSystem there, no saved block needed
    )


def task_runner_for(cfg: GdigConfig) -> TaskRunner:
    """The task runner named by cfg.orchestration.task_runner (used for the sharded stages).

    local: threads in this process (one model per worker); dask: prefect-dask on the
    scheduler at `address`, else a LocalCluster of `workers`; ray: prefect-ray (not a
    dependency of gdig: `pip install prefect-ray`), at `address` or a local Ray.
    """
    orch = cfg.orchestration
    if orch.task_runner == "local":
        return ThreadPoolTaskRunner(max_workers=orch.workers)
    if orch.task_runner == "dask":
        from prefect_dask import DaskTaskRunner

        if orch.address:
            return DaskTaskRunner(address=orch.address)
        return DaskTaskRunner(
            cluster_class="distributed.LocalCluster",
            cluster_kwargs={"n_workers": orch.workers, "threads_per_worker": 1,
                            "processes": orch.dask_processes, "dashboard_address": None},
        )
    if orch.task_runner == "ray":
        try:
            from prefect_ray import RayTaskRunner
        except ImportError:
            raise BadInputError(
                "task_runner: orchestration.task_runner=ray needs prefect-ray: pip install prefect-ray"
            ) from None
        return RayTaskRunner(address=orch.address) if orch.address else RayTaskRunner()
    raise BadInputError(f"task_runner: unknown task runner {orch.task_runner!r}")


def device_for(cfg: GdigConfig, shard_index: int) -> str | None:
    """Shard i runs on devices[i % len(devices)]; None: the model's configured device."""
    devices = cfg.orchestration.devices
    return devices[shard_index % len(devices)] if devices else None


# -- ghost runs: a flow run whose process was killed stays Running on the server ------------------
RUNS_DIR = "prefect-runs"  # under workspace.dir: one record per flow run this workspace started


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

    folder = Path(cfg.workspace.dir) / RUNS_DIR
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
    folder = Path(cfg.workspace.dir) / RUNS_DIR
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
            description="Created by gdig (tasks/runtime.py): a gdig flow run that stopped sending heartbeats "
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
