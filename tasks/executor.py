"""The Prefect executor of the stage graph (gdig.graph): one task per stage, mapped stages
submitted shard by shard to the configured task runner, so the flow run shows every stage and
every shard as its own task run.  `call_stage` is the body every task shares."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.futures import as_completed

from gdig import faults, graph
from gdig.config import GdigConfig
from gdig.stages import StageContext
from tasks.keys import own_key
from tasks.naming import artifact_key
from tasks.runtime import device_for, open_store, progress_bars, stage, task_runner_for


def call_stage(name: str, cfg: GdigConfig, label: str | None = None, device: str | None = None,
               run: tuple[str, dict] | None = None, **inputs) -> Any:
    """Run stage `name` of the graph inside its task: failures become StageError(label, cause),
    progress goes to the run, the store is opened only when the stage declares it uses one; a
    dict result carries the task's cache key (so downstream keys follow it)."""
    from tasks.progress import watch

    spec = graph.stage(name)
    with ExitStack() as stack:
        stack.enter_context(stage(label or name))
        if spec.reports_progress:
            stack.enter_context(watch())
        store = stack.enter_context(open_store(cfg)) if spec.uses_store else None
        with faults.stage(name):
            out = spec.function()(StageContext(cfg, store, progress_bars(), device, run), **inputs)
    return {**out, "key": own_key()} if isinstance(out, dict) else out


class PrefectExecutor:
    """Walks the graph as Prefect task runs (tasks.stages_for: retries, result storage, names)."""

    def __init__(self, cfg: GdigConfig):
        from tasks import stages_for

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
