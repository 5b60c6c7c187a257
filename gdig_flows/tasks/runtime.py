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
from gdig.errors import BadInput, disk_full


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
        full = disk_full(err)  # freeing space is the user's move, not a retry's
        if full is not None:
            raise BadInputError.of(name, full) from full
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
    from gdig_flows.tasks.ghosts import watch_this_run

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
    from gdig.workspace import Workspace

    return Workspace(cfg).prefect_results


def configure(task: Task, cfg: GdigConfig) -> Task:
    """The task with this workspace's retries, backoff (never for a BadInputError) and persisted
    result storage: JSON records only (gdig_flows.tasks.results: no pickle is ever read back; the cache
    policies refuse other records)."""
    from gdig_flows.tasks.results import GdigJSON

    path = results_dir(cfg)
    path.mkdir(parents=True, exist_ok=True)
    delays = list(cfg.orchestration.retry_delay_seconds) or [0.0]
    return task.with_options(
        retries=cfg.orchestration.retries,
        retry_delay_seconds=delays if len(delays) > 1 else delays[0],
        retry_condition_fn=retry_unless_bad_input,
        persist_result=True,
        result_storage=path.resolve(),  # a Path: a LocalFileSystem there, no saved block needed
        result_serializer=GdigJSON(),
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

