"""The Prefect executor of the stage graph (gdig.graph): one task per stage, generated from its
declaration (`stage_task`), mapped stages submitted shard by shard to the configured task
runner, so the flow run shows every stage and every shard as its own task run.  `call_stage`
is the body every task shares."""

from __future__ import annotations

import inspect
from contextlib import ExitStack
from typing import Any

from prefect import Task, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.futures import as_completed

from gdig import faults, graph
from gdig.config import GdigConfig
from gdig.stages import StageContext
from gdig_flows.tasks.keys import own_key, stage_policy
from gdig_flows.tasks.naming import artifact_key
from gdig_flows.tasks.runtime import device_for, open_store, progress_bars, stage, task_runner_for


def call_stage(name: str, cfg: GdigConfig, device: str | None = None, **inputs) -> Any:
    """Run stage `name` of the graph inside its task: failures become StageError(<its error
    name>, cause), progress goes to the run, the store is opened only when the stage declares it uses
    one; a dict result carries the task's cache key (so downstream keys follow it)."""
    from gdig_flows.tasks.progress import watch

    spec = graph.stage(name)
    with ExitStack() as stack:
        stack.enter_context(stage(spec.error_name({"cfg": cfg, **inputs})))
        if spec.reports_progress:
            stack.enter_context(watch())
        store = stack.enter_context(open_store(cfg)) if spec.uses_store else None
        run = run_identity(cfg) if spec.names_run else None
        ctx = StageContext(cfg, store, progress_bars(), device, run, graph.settings_key(spec, cfg), graph.code_keys())
        with faults.stage(name):
            out = spec.function()(ctx, **inputs)
    return {**out, "key": own_key()} if isinstance(out, dict) else out


def run_identity(cfg: GdigConfig) -> tuple[str, dict]:
    """This flow run's report directory name (<UTC stamp>-<flow run id>) and report header:
    date, command (rebuilt from the flow's parameters), config, workspace, the flow run."""
    from prefect.runtime import flow_run

    from gdig.report import run_header
    from gdig.runinfo import run_stamp

    params = dict(flow_run.parameters or {})
    config = params.get("config")
    command = " ".join(["gdig run", str(config or "")] + [f"--set {o}" for o in params.get("overrides") or []])
    run_id = f"{run_stamp()}-{str(flow_run.id or 'local')[:8]}"
    head = run_header(cfg, command.strip(), config,
                      **{"prefect flow run": f"{flow_run.name} ({flow_run.id})"} if flow_run.id else {})
    return run_id, head


def stage_task(spec: graph.Stage) -> Task:
    """The Prefect task of a declared stage: named as the stage, its parameters the config and the
    stage's declared inputs (optional where its function gives a default; plus the device of a
    mapped shard), its body `call_stage`, its cache
    key `stage_policy` (none for an uncached stage)."""
    def body(cfg: GdigConfig, **inputs) -> Any:
        return call_stage(spec.name, cfg, **inputs)

    defaults = inspect.signature(spec.function()).parameters  # an input the function defaults is optional
    params = [inspect.Parameter("cfg", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=GdigConfig)]
    params += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY,
                                 default=defaults[name].default if name in defaults else inspect.Parameter.empty)
               for name in spec.inputs]
    if spec.maps:
        params.append(inspect.Parameter("device", inspect.Parameter.KEYWORD_ONLY, default=None))
    body.__signature__ = inspect.Signature(params)
    body.__name__ = body.__qualname__ = spec.name.replace("-", "_")
    body.__doc__ = inspect.getdoc(spec.function())
    return task(name=spec.name, cache_policy=stage_policy(spec.name))(body)


class PrefectExecutor:
    """Walks the graph as Prefect task runs (tasks.stages_for: retries, result storage, names)."""

    def __init__(self, cfg: GdigConfig):
        from gdig_flows.tasks import stages_for

        self.cfg = cfg
        self.tasks = stages_for(cfg)

    def run(self, name: str, **inputs) -> Any:
        graph.check_call(graph.stage(name), inputs, mapped=False)
        return self.tasks[name](cfg=self.cfg, **inputs)

    def map(self, name: str, calls: list[dict], what: str | None = None) -> list[Any]:
        """The task once per shard on the configured task runner, results in shard order; shard i
        runs on devices[i % len(devices)]; a progress artifact counts the shards done."""
        spec = graph.stage(name)
        for inputs in calls:
            graph.check_call(spec, inputs, mapped=True)
        what = what or spec.maps
        progress = create_progress_artifact(0.0, key=artifact_key(self.cfg, what),
                                            description=f"{what}: shards done (%) of {len(calls)}")
        with task_runner_for(self.cfg) as runner:
            futures = [runner.submit(self.tasks[name], {"cfg": self.cfg, **inputs, "device": device_for(self.cfg, i)})
                       for i, inputs in enumerate(calls)]
            for done, _ in enumerate(as_completed(futures), 1):
                update_progress_artifact(progress, 100.0 * done / len(futures))
            return [f.result() for f in futures]
