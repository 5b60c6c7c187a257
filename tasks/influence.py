"""Influence: curvature (step 2), seed products (step 3), sharded scoring + merge (step 4).

score_shard never opens the store: it gets the rows and writes Parquet, so it can run on any
worker (thread, Dask/Ray process, another machine with the same filesystem).  The driver's
merge task loads the shards into DuckDB (the single writer).
"""

from __future__ import annotations

from prefect import task

from gdig.config import GdigConfig
from tasks.keys import ids_hash, own_key, stage_policy
from tasks.runtime import progress_bars, open_store, stage

MODEL_INPUT = ("languages", "model", "prompt", "influence.modules", "influence.loss")
ENGINE = ("gdig.influence.stages", "gdig.influence.hooks", "gdig.influence.modules")


@task(name="fit-curvature", cache_policy=stage_policy(
    "fit_curvature", sections=MODEL_INPUT + ("influence.curvature",),
    modules=ENGINE + ("gdig.influence.curvature",),
))
def fit_curvature(cfg: GdigConfig, checkpoint: dict, reference: dict) -> dict:
    """K-FAC / EK-FAC factors at the pool checkpoint; keyed on the reference pool (see ingest)."""
    from gdig.pipeline import curvature_step

    with stage("fit-curvature"), open_store(cfg) as store:
        cid = curvature_step(cfg, store, checkpoint["path"], checkpoint["checkpoint_id"], progress=progress_bars())
    return {"curvature_id": cid, "key": own_key()}


@task(name="seed-products", cache_policy=stage_policy(
    "seed_products", sections=MODEL_INPUT + ("influence.curvature", "influence.seed"),
    modules=ENGINE + ("gdig.influence.seeds", "gdig.influence.inverse"),
))
def seed_products(cfg: GdigConfig, checkpoint: dict, curvature: dict, seed: dict) -> dict:
    """H^-1 g_s per seed (or seed batch); seed = the seed set's fingerprint."""
    from gdig.pipeline import seed_products_step

    with stage("seed-products"), open_store(cfg) as store:
        path = seed_products_step(cfg, store, checkpoint["path"], checkpoint["checkpoint_id"],
                                  curvature["curvature_id"], progress=progress_bars())
    return {"products_path": path, "key": own_key()}


@task(name="plan-shards", cache_policy=stage_policy(
    "plan_shards", sections=("influence.scoring.shard_size",), modules=("gdig.pipeline",),
))
def plan_shards(cfg: GdigConfig, pool: dict, curvature: dict, products: dict) -> list[dict]:
    """The pool cut in aligned shards: appended rows only add (or complete) the last shards."""
    from gdig.influence.stages import pool_rows, shard_ranges
    from gdig.pipeline import shard_path

    with stage("plan-shards"), open_store(cfg) as store:
        rows = pool_rows(store, pool["name"])
        out = []
        for i, (start, end) in enumerate(shard_ranges(len(rows), cfg.influence.scoring.shard_size)):
            part = rows.iloc[start:end].reset_index(drop=True)
            out.append({"index": i, "start": start, "end": end, "ids_hash": ids_hash(part["example_id"]),
                        "rows": part, "out_path": shard_path(cfg, curvature["curvature_id"],
                                                             products["products_path"], start, end)})
    return out


@task(name="score-shard", cache_policy=stage_policy(
    "score_shard", sections=MODEL_INPUT + ("influence.scoring",),
    modules=ENGINE + ("gdig.influence.scoring", "gdig.influence.seeds"), uses_store=False,
))
def score_shard(cfg: GdigConfig, checkpoint: dict, products: dict, rows, out_path: str,
                device: str | None = None) -> dict:
    """Scores + sketches of one shard of candidates -> Parquet (no store access)."""
    from gdig.influence.stages import score_shard_stage

    start, end = int(rows["position"].min()), int(rows["position"].max()) + 1
    with stage(f"score-shard [{start}, {end})"):
        path = score_shard_stage(cfg, checkpoint["path"], products["products_path"], rows, out_path,
                                 progress=progress_bars(), device=device)
    return {"path": path, "start": start, "end": end, "n_rows": len(rows), "key": own_key()}


@task(name="merge-scores", cache_policy=stage_policy(
    "merge_scores", sections=("influence.scoring",), modules=("gdig.influence.stages",),
))
def merge_scores(cfg: GdigConfig, shards: list[dict], curvature: dict, products: dict) -> dict:
    """Load the shard Parquets into the store (aggregates, sketches, candidate x seed matrix)."""
    from gdig.pipeline import merge_step

    with stage("merge-scores"), open_store(cfg) as store:
        sid = merge_step(cfg, store, [s["path"] for s in shards], curvature["curvature_id"],
                         products["products_path"])
    return {"scoring_id": sid, "n_shards": len(shards), "key": own_key()}
