"""Stage 0: the config's data into the store (ingest) and the cheap rules' verdicts (prefilter)."""

from __future__ import annotations

import json
from glob import escape, glob
from pathlib import Path

from gdig.stages import StageContext
from gdig.workspace import file_digest, ids_hash, sha

REFERENCE_INFO = "orchestration.reference_pool"


def source_fingerprints(cfg, inputs: dict | None = None) -> dict[str, str]:
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


def pool_reference(cfg, store, name: str) -> dict:
    """The pool the checkpoint and curvature are fitted on.

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


def ingest(ctx: StageContext) -> dict:
    """Load data.candidates -> "pool", data.seed -> "seed", each eval source -> its set
    (idempotent); both candidates and seed must be given (ConfigError).  Returns their
    fingerprints and the reference pool."""
    from gdig.config import require_data
    from gdig.data.ingest import ingest_config

    store = ctx.store
    roles = ingest_config(require_data(ctx.cfg), store, progress=ctx.progress)
    pool_name, seed_name = roles["candidates"][0], roles["seed"][0]
    return {
        "roles": roles,
        "pool": dataset_fingerprint(store, pool_name),
        "reference": {"name": pool_name, **pool_reference(ctx.cfg, store, pool_name)},
        "seed": dataset_fingerprint(store, seed_name),
        "eval": [dataset_fingerprint(store, n) for n in roles["eval"]],
    }


def prefilter(ctx: StageContext, data: dict) -> dict:
    """Verdicts of the cheap rules for the pool (they decide what is scored and selected) and,
    reported only, the seed and eval sets; reused while the rules' settings are unchanged.
    data = ingest's fingerprints (so new rows are judged)."""
    from gdig.prefilter.verdicts import judge_datasets

    verdicts = {}
    if ctx.cfg.prefilter.enabled:  # off: the paper's pipeline, nothing judged, every row scored
        checked = [n for n in ctx.store.datasets()["name"] if n != "pool"]
        verdicts = judge_datasets(ctx.cfg, ctx.store, "pool", checked)
    return {"datasets": verdicts, "pool": data["pool"]}
