"""Content-hash cache keys for gdig tasks.

A key is the hash of: the stage name, the source of the task and of every gdig module the stage's
function reaches (gdig.graph.Stage.code_modules, walked from the source by gdig.reach), the config sections it declares, the identity of the workspace store (for tasks
that read or write it) and the task's other inputs, reduced to content: a DataFrame by its
example ids, dicts/lists/strings as JSON.  Upstream task results are inputs, and each result
carries its own key ("key"), so a change anywhere upstream changes every key below it,
while an unchanged input gives the same key in every run, process and machine.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any, Iterable

import pandas as pd
from prefect.cache_policies import CacheKeyFnPolicy
from prefect.context import TaskRunContext

from gdig import graph
from gdig.config import GdigConfig
from gdig.reach import library_versions, source_hash
from gdig.workspace import config_hash, ids_hash, json_hash, module_source_hash, sha  # noqa: F401 (re-exported)
from gdig_flows.tasks.results import checked

# parameters that never change a result (where it runs, how chatty it is)
NOT_CONTENT = frozenset({"cfg", "progress", "device"})


def content(value: Any) -> Any:
    """A JSON-able stand-in for a task input that depends only on its content."""
    if isinstance(value, pd.DataFrame):
        if "example_id" in value.columns:  # ids are content hashes; positions fix the order
            pos = value["position"].astype(str) if "position" in value.columns else []
            return {"frame_ids": ids_hash(value["example_id"].astype(str)), "positions": ids_hash(pos)}
        return {"frame": sha(pd.util.hash_pandas_object(value, index=True).values.tobytes())}
    if isinstance(value, GdigConfig):
        return config_hash(value, type(value).model_fields)
    if isinstance(value, dict):
        return {str(k): content(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [content(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def store_identity(cfg: GdigConfig) -> str:
    from gdig.store import Store

    with Store(cfg.workspace.db) as store:
        return store.store_id()


def model_identity(cfg: GdigConfig) -> str:
    """gdig.modeling.ModelRef.hash of the config's model: a local directory edited in place or a
    hub revision that moved to another commit renews every stage that reads the model."""
    from gdig.modeling import ModelRef

    return ModelRef.of(cfg.model).hash()


def stage_key(
    stage: str, cfg: GdigConfig, inputs: dict[str, Any], *, sections: Iterable[str],
    modules: Iterable[str] = (), source: str = "", uses_store: bool = True,
    extra: Any = None,
) -> str:
    parts = {
        "stage": stage,
        "config": config_hash(cfg, sections),
        "code": [sha(source)] + [source_hash(m) for m in modules],
        "inputs": {k: content(v) for k, v in sorted(inputs.items()) if k not in NOT_CONTENT},
        "store": store_identity(cfg) if uses_store else None,
        "extra": extra,
        "libraries": library_versions(),  # torch, transformers...: an upgrade renews the results
    }
    if any(s == "model" or s.startswith("model.") for s in sections):
        parts["model"] = model_identity(cfg)  # the weights' content or hub commit, not just the name
    return f"{stage}-{sha(json.dumps(parts, sort_keys=True, default=str))}"


def declared_key(name: str, cfg: GdigConfig, params: dict[str, Any], source: str = "") -> str:
    """The cache key of stage `name` from what the graph declares for it: its config sections,
    the source of its code modules, the settings it reads, whether it reads the store."""
    spec = graph.stage(name)
    return stage_key(name, cfg, params, sections=spec.sections, modules=spec.code_modules(), source=source,
                     uses_store=spec.uses_store, extra=spec.settings_read(cfg, params))


def stage_policy(name: str):
    """The Prefect cache policy of a declared stage: `declared_key` of the task run's parameters
    and the task's own source; NO_CACHE for a stage declared uncached."""
    from prefect.cache_policies import NO_CACHE

    if not graph.stage(name).cached:
        return NO_CACHE

    def key_fn(ctx: TaskRunContext, params: dict[str, Any]) -> str:
        return declared_key(name, params["cfg"], params, source=inspect.getsource(ctx.task.fn))

    return CacheKeyFnPolicy(cache_key_fn=checked(key_fn))  # only GdigJSON records are read back


def own_key() -> str | None:
    """The cache key of the running task (None outside a Prefect task run)."""
    from prefect.transactions import get_transaction

    txn = get_transaction()
    return None if txn is None else txn.key
