"""Content-hash cache keys for gdig tasks.

A key is the hash of: the stage name, the source of the task and of the gdig modules it
wraps, the config sections the stage reads, the identity of the workspace store (for tasks
that read or write it) and the task's other inputs, reduced to content: a DataFrame by its
example ids, dicts/lists/strings as JSON.  Upstream task results are inputs, and each result
carries its own key ("key"), so a change anywhere upstream changes every key below it,
while an unchanged input gives the same key in every run, process and machine.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd
from prefect.cache_policies import CacheKeyFnPolicy
from prefect.context import TaskRunContext

from gdig.config import GdigConfig

# parameters that never change a result (where it runs, how chatty it is)
NOT_CONTENT = frozenset({"cfg", "progress", "device"})


def sha(text: str | bytes, n: int = 32) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()[:n]


def ids_hash(ids: Iterable[str]) -> str:
    """Fingerprint of an ordered list of example ids (ids are content hashes already)."""
    return sha("\n".join(ids))


def config_hash(cfg: GdigConfig, sections: Iterable[str]) -> str:
    """Hash of config sections; dotted names pick sub-sections ("influence.curvature")."""
    dump = cfg.model_dump(mode="json")
    picked = {}
    for name in sections:
        node: Any = dump
        for part in name.split("."):
            node = node[part]
        picked[name] = node
    return sha(json.dumps(picked, sort_keys=True))


def file_digest(path: str | Path) -> str:
    """Content hash of a file, or of every file under a directory (names included)."""
    p = Path(path)
    h = hashlib.sha256()
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    for f in files:
        h.update(str(f.relative_to(p) if p.is_dir() else f.name).encode())
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:32]


def module_source_hash(module: str) -> str:
    """Hash of a module's source file (any edit to a wrapped stage invalidates its cache)."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return f"missing:{module}"
    return sha(Path(spec.origin).read_bytes())


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


def stage_key(
    stage: str, cfg: GdigConfig, inputs: dict[str, Any], *, sections: Iterable[str],
    modules: Iterable[str] = (), source: str = "", uses_store: bool = True,
    extra: Any = None,
) -> str:
    parts = {
        "stage": stage,
        "config": config_hash(cfg, sections),
        "code": [sha(source)] + [module_source_hash(m) for m in modules],
        "inputs": {k: content(v) for k, v in sorted(inputs.items()) if k not in NOT_CONTENT},
        "store": store_identity(cfg) if uses_store else None,
        "extra": extra,
    }
    return f"{stage}-{sha(json.dumps(parts, sort_keys=True, default=str))}"


def stage_policy(
    stage: str, *, sections: Iterable[str], modules: Iterable[str] = (), uses_store: bool = True,
    extra: Callable[[dict[str, Any]], Any] | None = None,
) -> CacheKeyFnPolicy:
    """A Prefect cache policy computing `stage_key` from the task run's parameters."""
    sections, modules = tuple(sections), tuple(modules)

    def key_fn(ctx: TaskRunContext, params: dict[str, Any]) -> str:
        source = inspect.getsource(ctx.task.fn)
        return stage_key(
            stage, params["cfg"], params, sections=sections, modules=modules, source=source,
            uses_store=uses_store, extra=extra(params) if extra else None,
        )

    return CacheKeyFnPolicy(cache_key_fn=key_fn)


def own_key() -> str | None:
    """The cache key of the running task (None outside a Prefect task run)."""
    from prefect.transactions import get_transaction

    txn = get_transaction()
    return None if txn is None else txn.key
