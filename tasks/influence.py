"""Influence: sharded curvature (stage 2), seed products (3), sharded scoring + merge (4), over
gdig.stages.influence.

curvature_shard and score_shard never open the store: they get the rows and write files
(partial sums / Parquet), so they can run on any worker (thread, Dask/Ray process, another
machine with the same filesystem).  The driver's fit-curvature / merge-scores tasks sum the
partials / load the shards into DuckDB (the single writer).
"""

from __future__ import annotations

from prefect import task

from gdig.config import GdigConfig
from tasks.executor import call_stage
from tasks.keys import stage_policy


def _span(rows) -> str:
    return f"[{int(rows['position'].min())}, {int(rows['position'].max()) + 1})" if len(rows) else "[0, 0)"


@task(name="plan-curvature", cache_policy=stage_policy("plan-curvature"))
def plan_curvature(cfg: GdigConfig, checkpoint: dict, reference: dict) -> dict:
    """The curvature rows (the reference pool, or its sample) cut in aligned shards."""
    return call_stage("plan-curvature", cfg, checkpoint=checkpoint, reference=reference)


@task(name="curvature-shard", cache_policy=stage_policy("curvature-shard"))
def curvature_shard(cfg: GdigConfig, checkpoint: dict, rows, out_path: str, bases: dict | None = None,
                    device: str | None = None) -> dict:
    """Partial curvature sums of one shard: the factor sums, or with ``bases`` the eigenvalue sums."""
    what = "eigenvalues" if bases else "factors"
    return call_stage("curvature-shard", cfg, f"curvature-shard {what} {_span(rows)}", device,
                      checkpoint=checkpoint, rows=rows, out_path=out_path, bases=bases)


@task(name="curvature-bases", cache_policy=stage_policy("curvature-bases"))
def curvature_bases(cfg: GdigConfig, plan: dict, factors: list[dict]) -> dict:
    """Between the two mapped passes (EK-FAC): summed factors and their eigenbases."""
    return call_stage("curvature-bases", cfg, plan=plan, factors=factors)


@task(name="fit-curvature", cache_policy=stage_policy("fit-curvature"))
def fit_curvature(cfg: GdigConfig, checkpoint: dict, plan: dict, factors: list[dict],
                  bases: dict | None = None, eigen: list[dict] | None = None) -> dict:
    """The shards' partials summed in shard order and recorded in the store."""
    return call_stage("fit-curvature", cfg, checkpoint=checkpoint, plan=plan, factors=factors, bases=bases,
                      eigen=eigen)


@task(name="seed-products", cache_policy=stage_policy("seed-products"))
def seed_products(cfg: GdigConfig, checkpoint: dict, curvature: dict, seed: dict) -> dict:
    """H^-1 g_s per seed (or seed group); seed = the seed set's fingerprint."""
    return call_stage("seed-products", cfg, checkpoint=checkpoint, curvature=curvature, seed=seed)


@task(name="plan-shards", cache_policy=stage_policy("plan-shards"))
def plan_shards(cfg: GdigConfig, pool: dict, prefilter: dict | None, curvature: dict, products: dict) -> list[dict]:
    """The pool cut in aligned position ranges, each with its rows that pass the prefilter."""
    return call_stage("plan-shards", cfg, pool=pool, prefilter=prefilter, curvature=curvature, products=products)


@task(name="score-shard", cache_policy=stage_policy("score-shard"))
def score_shard(cfg: GdigConfig, checkpoint: dict, products: dict, rows, out_path: str,
                device: str | None = None) -> dict:
    """Scores + sketches of one shard of candidates -> Parquet (rows scored before are reused)."""
    return call_stage("score-shard", cfg, f"score-shard {_span(rows)}", device,
                      checkpoint=checkpoint, products=products, rows=rows, out_path=out_path)


@task(name="merge-scores", cache_policy=stage_policy("merge-scores"))
def merge_scores(cfg: GdigConfig, shards: list[dict], curvature: dict, products: dict) -> dict:
    """Load the shard Parquets into the store (aggregates, sketches, candidate x seed matrix)."""
    return call_stage("merge-scores", cfg, shards=shards, curvature=curvature, products=products)


@task(name="source-free-loss", cache_policy=stage_policy("source-free-loss"))
def source_free_loss(cfg: GdigConfig, checkpoint: dict, scoring: dict) -> dict:
    """The candidates' target loss with the source left out of the prompt (the source-gain rule)."""
    return call_stage("source-free-loss", cfg, checkpoint=checkpoint, scoring=scoring)
