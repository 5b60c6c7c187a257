"""The `select` flow: ingest -> prefilter -> model on the pool -> curvature shards (mapped) -> seed
products -> score shards of the rows that pass (mapped on the configured task runner) -> merge ->
quality -> cluster + resample -> export, for every strategy x budget of the config."""

from __future__ import annotations

from typing import Annotated

from prefect import flow
from pydantic import Field
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.futures import as_completed

from tasks import (device_for, load_settings, publish_selection, reads_quality, selection_jobs, stages_for,
                   task_runner_for)
from tasks.naming import artifact_key, select_run_name
from tasks.progress import log_to_run


def map_shards(cfg, task, calls: list[dict], what: str) -> list[dict]:
    """Run ``task`` once per shard's parameters on the configured task runner, in shard order;
    shard i runs on devices[i % len(devices)]."""
    progress = create_progress_artifact(0.0, key=artifact_key(cfg, what),
                                        description=f"{what}: shards done (%) of {len(calls)}")
    with task_runner_for(cfg) as runner:
        futures = [runner.submit(task, {**call, "device": device_for(cfg, i)}) for i, call in enumerate(calls)]
        for done, _ in enumerate(as_completed(futures), 1):
            update_progress_artifact(progress, 100.0 * done / len(futures))
        return [f.result() for f in futures]


def fit_curvature(cfg, t, checkpoint: dict, reference: dict) -> dict:
    """Step 2 mapped over shards of the curvature rows: partial sums per shard on the workers,
    summed in shard order in the driver (EK-FAC: eigenbases, then a second mapped pass)."""
    plan = t.plan_curvature(cfg, checkpoint, reference)
    shards = plan["shards"]
    factors = map_shards(cfg, t.curvature_shard, [
        {"cfg": cfg, "checkpoint": checkpoint, "rows": s["rows"], "out_path": s["factors_path"]} for s in shards
    ], "curvature shards")
    bases = eigen = None
    if plan["strategy"] == "ekfac":
        bases = t.curvature_bases(cfg, plan, factors)
        eigen = map_shards(cfg, t.curvature_shard, [
            {"cfg": cfg, "checkpoint": checkpoint, "rows": s["rows"], "out_path": s["eigen_path"], "bases": bases}
            for s in shards
        ], "curvature eigenvalue shards")
    return t.fit_curvature(cfg, checkpoint, plan, factors, bases, eigen)


def score_shards(cfg, t, checkpoint: dict, products: dict, shards: list[dict]) -> list[dict]:
    """Step 4 on the configured task runner."""
    return map_shards(cfg, t.score_shard, [
        {"cfg": cfg, "checkpoint": checkpoint, "products": products, "rows": s["rows"], "out_path": s["out_path"]}
        for s in shards
    ], "score shards")


@flow(name="gdig-select", log_prints=True, flow_run_name=select_run_name)
def select_flow(
    config: Annotated[str, Field(examples=["configs/wmt-de-en.yaml", "/srv/gdig/wmt-de-en/gdig.yaml"])],
    overrides: Annotated[list[str] | None, Field(examples=[["selection.budgets=[1000,5000]"],
                                                            ["data.candidates=[{path: new.jsonl}]"]])] = None,
) -> dict:
    """G-DIG selection for every strategy x budget of the config.

    Args:
        config: Path of the workspace YAML config, as the worker sees it (relative paths are
            resolved against the directory `prefect deploy` or `serve.py` ran in).
        overrides: Config keys to override, KEY=VALUE with the value parsed as YAML, as
            `gdig select --set` takes them; empty: the config as it is.
    """
    cfg = load_settings(config, overrides)
    t = stages_for(cfg)

    data = t.ingest(cfg)
    screened = t.prefilter(cfg, data)
    checkpoint = t.finetune_pool(cfg, data["reference"])
    curvature = fit_curvature(cfg, t, checkpoint, data["reference"])
    products = t.seed_products(cfg, checkpoint, curvature, data["seed"])
    shards = t.plan_shards(cfg, data["pool"], screened["datasets"].get("pool"), curvature, products)
    scored = score_shards(cfg, t, checkpoint, products, shards)
    scoring = t.merge_scores(cfg, scored, curvature, products)

    high_quality = t.quality(cfg, scoring)
    selections = [t.cluster_resample(cfg, scoring, high_quality if reads_quality(strategy) else None,
                                     strategy, budget)
                  for strategy, budget in selection_jobs(cfg)]
    exports = [t.export(cfg, selection) for selection in selections]

    summary = t.summarize(cfg, scoring, exports)
    publish_selection(cfg, data, high_quality, summary, exports)
    log_to_run(summary["text"])  # the run log; the terminal gets it once, from the gdig command
    return {"data": data, "checkpoint": checkpoint, "scoring": scoring, "quality": high_quality,
            "selections": exports, "summary": summary}
