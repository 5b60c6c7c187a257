"""Influence: sharded curvature (step 2), seed products (step 3), sharded scoring + merge (step 4).

curvature_shard and score_shard never open the store: they get the rows and write files
(partial sums / Parquet), so they can run on any worker (thread, Dask/Ray process, another machine with the same filesystem).  The driver's
fit-curvature / merge tasks sum the partials / load the shards into DuckDB (the single writer).
"""

from __future__ import annotations

from prefect import task

from gdig.config import GdigConfig
from tasks.keys import ids_hash, own_key, stage_policy
from tasks.progress import watch
from tasks.runtime import progress_bars, open_store, stage

MODEL_INPUT = ("languages", "model", "prompt", "influence.modules", "influence.loss")
ENGINE = ("gdig.influence.stages", "gdig.influence.hooks", "gdig.influence.modules")


@task(name="plan-curvature", cache_policy=stage_policy(
    "plan_curvature", sections=MODEL_INPUT + ("influence.curvature", "influence.scoring.shard_size"),
    modules=("gdig.influence.stages",),
))
def plan_curvature(cfg: GdigConfig, checkpoint: dict, reference: dict) -> dict:
    """The curvature rows (the reference pool, or its sample: appended candidates never enter)
    cut in aligned shards, with the paths of their partial-sum files."""
    from gdig.influence.stages import (curvature_bases_path, curvature_id_for, curvature_partial_path,
                                       curvature_rows, curvature_shards)

    with stage("plan-curvature"), open_store(cfg) as store:
        rows = curvature_rows(cfg, store, reference["name"], n_rows=reference["n_rows"])
        if len(rows) == 0:
            raise ValueError(f"dataset {reference['name']!r} is empty: nothing to fit the curvature on")
        cid = curvature_id_for(cfg, checkpoint["checkpoint_id"], rows["example_id"])
        shards = []
        for i, (start, end) in enumerate(curvature_shards(cfg, len(rows))):
            shards.append({"index": i, "start": start, "end": end, "rows": rows.iloc[start:end].reset_index(drop=True),
                           "factors_path": curvature_partial_path(cfg, cid, "factors", start, end),
                           "eigen_path": curvature_partial_path(cfg, cid, "eigen", start, end)})
    return {"curvature_id": cid, "dataset": reference["name"], "strategy": cfg.influence.curvature.strategy,
            "shards": shards,
            "bases_path": curvature_bases_path(cfg, cid), "key": own_key()}


@task(name="curvature-shard", cache_policy=stage_policy(
    "curvature_shard", sections=MODEL_INPUT + ("influence.curvature",),
    modules=ENGINE + ("gdig.influence.curvature",), uses_store=False,
))
def curvature_shard(cfg: GdigConfig, checkpoint: dict, rows, out_path: str, bases: dict | None = None,
                    device: str | None = None) -> dict:
    """Partial curvature sums of one shard -> safetensors (no store access): the factor sums,
    or with ``bases`` (EK-FAC) the corrected-eigenvalue sums in those eigenbases."""
    from gdig.influence.stages import curvature_shard_stage

    start, end = int(rows["position"].min()), int(rows["position"].max()) + 1
    what = "eigenvalues" if bases else "factors"
    with stage(f"curvature-shard {what} [{start}, {end})"), watch():
        path = curvature_shard_stage(cfg, checkpoint["path"], rows, out_path,
                                     bases_path=bases["path"] if bases else None, device=device,
                                     progress=progress_bars())
    return {"path": path, "n_rows": len(rows), "key": own_key()}


@task(name="curvature-bases", cache_policy=stage_policy(
    "curvature_bases", sections=MODEL_INPUT + ("influence.curvature",),
    modules=("gdig.influence.stages", "gdig.influence.curvature"), uses_store=False,
))
def curvature_bases(cfg: GdigConfig, plan: dict, factors: list[dict]) -> dict:
    """EK-FAC between the two mapped passes: summed factors (shard order) and their eigenbases."""
    from gdig.influence.stages import curvature_bases_stage

    with stage("curvature-bases"):
        path = curvature_bases_stage(cfg, [f["path"] for f in factors], plan["bases_path"])
    return {"path": path, "key": own_key()}


@task(name="fit-curvature", cache_policy=stage_policy(
    "fit_curvature", sections=MODEL_INPUT + ("influence.curvature",),
    modules=ENGINE + ("gdig.influence.curvature",),
))
def fit_curvature(cfg: GdigConfig, checkpoint: dict, plan: dict, factors: list[dict],
                  bases: dict | None = None, eigen: list[dict] | None = None) -> dict:
    """K-FAC / EK-FAC factors at the pool checkpoint: the shards' partials summed in shard order
    (the same numbers as the one-process gdig.pipeline.curvature_step) and recorded in the store."""
    from gdig.influence.stages import finish_curvature_stage

    with stage("fit-curvature"), open_store(cfg) as store:
        cid = finish_curvature_stage(cfg, store, checkpoint["checkpoint_id"], [f["path"] for f in factors],
                                     eigen_paths=[e["path"] for e in eigen] if eigen else None,
                                     bases_path=bases["path"] if bases else None,
                                     dataset=plan["dataset"])
    return {"curvature_id": cid, "key": own_key()}


@task(name="seed-products", cache_policy=stage_policy(
    "seed_products", sections=MODEL_INPUT + ("influence.curvature", "influence.seed_set"),
    modules=ENGINE + ("gdig.influence.seeds", "gdig.influence.inverse"),
))
def seed_products(cfg: GdigConfig, checkpoint: dict, curvature: dict, seed: dict) -> dict:
    """H^-1 g_s per seed (or seed batch); seed = the seed set's fingerprint."""
    from gdig.pipeline import seed_products_step

    with stage("seed-products"), watch(), open_store(cfg) as store:
        path = seed_products_step(cfg, store, checkpoint["path"], checkpoint["checkpoint_id"],
                                  curvature["curvature_id"], progress=progress_bars())
    return {"products_path": path, "key": own_key()}


@task(name="plan-shards", cache_policy=stage_policy(
    # the shard file names carry the influence + prompt settings (gdig.pipeline.shard_path)
    "plan_shards", sections=("influence", "prompt"), modules=("gdig.pipeline",),
))
def plan_shards(cfg: GdigConfig, pool: dict, prefilter: dict | None, curvature: dict, products: dict) -> list[dict]:
    """The pool cut in aligned position ranges, each with its rows that pass the prefilter
    (`prefilter`: the pool's verdict counts, None when it is off): appended rows only add (or
    complete) the last shards."""
    from gdig.influence.stages import shard_ranges
    from gdig.pipeline import scoring_rows, shard_path, shard_rows

    with stage("plan-shards"), open_store(cfg) as store:
        # the pool as ingest fingerprinted it: rows another run appended since are not this config's
        n = pool["n_rows"]
        if ids_hash(store.dataset_ids(pool["name"])[:n]) != pool["ids_hash"]:
            raise RuntimeError(f"dataset {pool['name']!r} changed in the store since it was ingested; run again")
        rows = scoring_rows(cfg, store)
        rows = rows[rows["position"] < n]
        out = []
        for i, (start, end) in enumerate(shard_ranges(n, cfg.influence.scoring.shard_size)):
            part = shard_rows(rows, start, end)
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
    """Scores + sketches of one shard of candidates -> Parquet files (no store access); rows
    scored before (e.g. before a prefilter change) are reused, only new ones are scored."""
    from gdig.pipeline import score_shard_step

    start, end = (int(rows["position"].min()), int(rows["position"].max()) + 1) if len(rows) else (0, 0)
    with stage(f"score-shard [{start}, {end})"), watch():
        paths = score_shard_step(cfg, checkpoint["path"], products["products_path"], rows, out_path,
                                 progress=progress_bars(), device=device)
    return {"paths": paths, "start": start, "end": end, "n_rows": len(rows), "key": own_key()}


@task(name="merge-scores", cache_policy=stage_policy(
    "merge_scores", sections=("influence.scoring",), modules=("gdig.influence.stages", "gdig.pipeline"),
))
def merge_scores(cfg: GdigConfig, shards: list[dict], curvature: dict, products: dict) -> dict:
    """Load the shard Parquets into the store (aggregates, sketches, candidate x seed matrix)."""
    from gdig.pipeline import merge_step

    with stage("merge-scores"), open_store(cfg) as store:
        sid = merge_step(cfg, store, [s["paths"] for s in shards], curvature["curvature_id"],
                         products["products_path"])
    return {"scoring_id": sid, "n_shards": len(shards), "key": own_key()}
