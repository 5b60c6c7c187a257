"""The `select` flow: ingest -> model on the pool -> curvature -> seed products ->
score shards (mapped on the configured task runner) -> merge -> quality -> cluster + resample
-> export, for every strategy x budget of the config."""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.futures import as_completed

from tasks import (device_for, load_settings, publish_selection, selection_jobs, stages_for,
                   task_runner_for)


def score_shards(cfg, t, checkpoint: dict, products: dict, shards: list[dict]) -> list[dict]:
    """Step 4 on the configured task runner; shard i runs on devices[i % len(devices)]."""
    progress = create_progress_artifact(0.0, description="score shards done (%)")
    with task_runner_for(cfg) as runner:
        futures = [
            runner.submit(t.score_shard, {
                "cfg": cfg, "checkpoint": checkpoint, "products": products, "rows": shard["rows"],
                "out_path": shard["out_path"], "device": device_for(cfg, shard["index"]),
            })
            for shard in shards
        ]
        for done, _ in enumerate(as_completed(futures), 1):
            update_progress_artifact(progress, 100.0 * done / len(futures))
        return [f.result() for f in futures]


@flow(name="gdig-select", log_prints=True)
def select_flow(config: str, overrides: list[str] | None = None) -> dict:
    """G-DIG selection for every strategy x budget of the config."""
    cfg = load_settings(config, overrides)
    t = stages_for(cfg)

    data = t.ingest(cfg)
    checkpoint = t.finetune_pool(cfg, data["reference"])
    curvature = t.fit_curvature(cfg, checkpoint, data["reference"])
    products = t.seed_products(cfg, checkpoint, curvature, data["seed"])
    shards = t.plan_shards(cfg, data["pool"], curvature, products)
    scored = score_shards(cfg, t, checkpoint, products, shards)
    scoring = t.merge_scores(cfg, scored, curvature, products)

    high_quality = t.quality(cfg, scoring)
    selections = [t.cluster_resample(cfg, scoring, high_quality, strategy, budget)
                  for strategy, budget in selection_jobs(cfg)]
    exports = [t.export(cfg, selection) for selection in selections]

    summary = t.summarize(cfg, scoring, exports)
    publish_selection(cfg, data, high_quality, summary, exports)
    print(summary["text"])
    return {"data": data, "checkpoint": checkpoint, "scoring": scoring, "quality": high_quality,
            "selections": exports, "summary": summary}
