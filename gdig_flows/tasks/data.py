"""The demo workspace's preparation (a task of its own: not a stage of the graph)."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import task
from prefect.cache_policies import CacheKeyFnPolicy

from gdig.reach import library_versions, modules_reached, source_hash
from gdig_flows.tasks.keys import sha
from gdig_flows.tasks.naming import task_run_namer
from gdig_flows.tasks.progress import watch
from gdig_flows.tasks.results import checked
from gdig_flows.tasks.runtime import progress_bars, stage


def _demo_key(ctx, params: dict) -> str:
    """prepare-demo is cached by workdir, seed, demo settings and the demo code, in the workdir
    itself (so a deleted workdir is rebuilt)."""
    import inspect

    from gdig.demo.settings import CONFIG_PATH

    parts = {"workdir": str(Path(params["workdir"]).resolve()), "seed": params.get("seed", 0),
             "demo": params.get("demo_overrides") or {},
             "code": [sha(inspect.getsource(ctx.task.fn))]
             + [source_hash(m) for m in modules_reached("gdig.demo", "prepare_demo")]  # walked, not listed
             + [sha(CONFIG_PATH.read_bytes())], "libraries": library_versions()}
    return "prepare_demo-" + sha(json.dumps(parts, sort_keys=True))


@task(name="prepare-demo", cache_policy=CacheKeyFnPolicy(cache_key_fn=checked(_demo_key)))
def prepare_demo(workdir: str, seed: int = 0, demo_overrides: dict | None = None) -> str:
    """The demo workspace (corpus with injected noise, seed and eval sets, tiny model, config)."""
    from gdig.demo import prepare_demo as build

    with stage("prepare-demo"), watch():
        return str(build(workdir, seed=seed, progress=progress_bars(), demo_overrides=demo_overrides or None))


def demo_preparation(workdir: str):
    """The prepare-demo task with its results kept in the demo workdir."""
    from gdig_flows.tasks.results import GdigJSON

    path = Path(workdir).resolve() / ".prefect-results"
    path.mkdir(parents=True, exist_ok=True)
    return prepare_demo.with_options(persist_result=True, result_storage=path,
                                     result_serializer=GdigJSON(),
                                     task_run_name=task_run_namer("prepare-demo"))
