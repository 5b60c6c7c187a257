"""Ingest: the config's data sources into the store, and the fingerprints downstream keys use."""

from __future__ import annotations

import json
from glob import escape, glob
from pathlib import Path

from prefect import task
from prefect.cache_policies import CacheKeyFnPolicy

from gdig.config import GdigConfig
from gdig.data.readers import MODULES as READER_MODULES
from tasks.keys import file_digest, ids_hash, module_source_hash, own_key, sha, stage_policy
from tasks.naming import task_run_namer
from tasks.progress import watch
from tasks.runtime import progress_bars, open_store, stage

REFERENCE_INFO = "orchestration.reference_pool"


def source_fingerprints(cfg: GdigConfig) -> dict[str, str]:
    """Content hash of every data source the config names (so an edited file re-ingests)."""
    out = {}
    for role in ("candidates", "seed", "eval"):
        for i, src in enumerate(getattr(cfg.data, role)):
            p = Path(src.path)
            if src.path.startswith("hf:"):
                digest = "hub"  # a hub dataset: its name and split are in the config section
            elif p.exists():
                digest = file_digest(p)
            else:  # a Moses prefix: x -> x.de + x.en
                files = sorted(glob(escape(src.path) + ".*"))
                digest = sha("".join(file_digest(f) for f in files)) if files else "missing"
            out[f"{role}.{i}"] = digest
    return out


def dataset_fingerprint(store, name: str) -> dict:
    ids = store.dataset_ids(name)
    return {"name": name, "n_rows": len(ids), "ids_hash": ids_hash(ids)}


def pool_reference(cfg: GdigConfig, store, name: str) -> dict:
    """The pool the checkpoint and curvature are keyed on.

    With refit_on_append false (default) this is the pool as first fitted, kept while the pool
    only grows by appending (its first n ids unchanged): appended candidates are then scored
    against the same checkpoint, curvature and seed products.  Any other change (or
    refit_on_append true) makes the current pool the reference.
    """
    ids = store.dataset_ids(name)
    current = {"n_rows": len(ids), "ids_hash": ids_hash(ids)}
    if cfg.orchestration.refit_on_append:
        return current
    rec = json.loads(store.info(REFERENCE_INFO) or "null")
    if rec and rec["n_rows"] <= len(ids) and ids_hash(ids[: rec["n_rows"]]) == rec["ids_hash"]:
        return rec
    store.set_info(REFERENCE_INFO, json.dumps(current))
    return current


@task(name="ingest", cache_policy=stage_policy(
    "ingest", sections=("languages", "data", "prompt", "orchestration.refit_on_append"),
    modules=("gdig.data.ingest", "gdig.data.readers", *READER_MODULES, "gdig.data.validate"),
    extra=lambda params: source_fingerprints(params["cfg"]),
))
def ingest(cfg: GdigConfig) -> dict:
    """Load candidates -> "pool", seed -> "seed", each eval source -> its set; fingerprint them."""
    from gdig.pipeline import ingest_step

    with stage("ingest"), watch(), open_store(cfg) as store:
        roles = ingest_step(cfg, store, progress=progress_bars())
        pool_name, seed_name = roles["candidates"][0], roles["seed"][0]
        return {
            "roles": roles,
            "pool": dataset_fingerprint(store, pool_name),
            "reference": {"name": pool_name, **pool_reference(cfg, store, pool_name)},
            "seed": dataset_fingerprint(store, seed_name),
            "eval": [dataset_fingerprint(store, n) for n in roles["eval"]],
            "key": own_key(),
        }


@task(name="prefilter", cache_policy=stage_policy(
    "prefilter", sections=("prefilter", "languages"),
    modules=("gdig.prefilter.rules", "gdig.prefilter.decisions", "gdig.prefilter.stage", "gdig.prefilter.langid",
             "gdig.prefilter.text", "gdig.prefilter.scripts", "gdig.prefilter.charclass"),
))
def prefilter(cfg: GdigConfig, data: dict) -> dict:
    """Step 0: verdicts of the cheap rules for the pool (what is scored) and, reported only,
    the seed and eval sets; data = ingest's fingerprints (so new rows are judged)."""
    from gdig.pipeline import prefilter_step

    with stage("prefilter"), open_store(cfg) as store:
        verdicts = prefilter_step(cfg, store)
    return {"datasets": verdicts, "pool": data["pool"], "key": own_key()}


def _demo_key(ctx, params: dict) -> str:
    """prepare-demo is cached by workdir, seed and the demo code, in the workdir itself (so a
    deleted workdir is rebuilt)."""
    import inspect

    from gdig.demo.settings import CONFIG_PATH

    parts = {"workdir": str(Path(params["workdir"]).resolve()), "seed": params.get("seed", 0),
             "code": [sha(inspect.getsource(ctx.task.fn))]
             + [module_source_hash(m) for m in ("gdig.demo.prepare", "gdig.demo.corpus", "gdig.demo.settings",
                                                "gdig.data.noise")] + [sha(CONFIG_PATH.read_bytes())]}
    return "prepare_demo-" + sha(json.dumps(parts, sort_keys=True))


@task(name="prepare-demo", cache_policy=CacheKeyFnPolicy(cache_key_fn=_demo_key))
def prepare_demo(workdir: str, seed: int = 0) -> str:
    """The demo workspace (corpus with injected noise, seed and eval sets, tiny model, config)."""
    from gdig.demo import prepare_demo as build

    with stage("prepare-demo"), watch():
        return str(build(workdir, seed=seed, progress=progress_bars()))


def demo_preparation(workdir: str):
    """The prepare-demo task with its results kept in the demo workdir."""
    path = Path(workdir).resolve() / ".prefect-results"
    path.mkdir(parents=True, exist_ok=True)
    return prepare_demo.with_options(persist_result=True, result_storage=path,
                                     task_run_name=task_run_namer("prepare-demo"))
