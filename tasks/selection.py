"""Selection: quality (Eq. 4, step 5), cluster + resample per strategy x budget (step 6), export."""

from __future__ import annotations

from prefect import task

from gdig.config import GdigConfig
from tasks.keys import own_key, stage_policy
from tasks.runtime import open_store, stage

SELECTION = ("gdig.pipeline", "gdig.selection.select", "gdig.selection.quality", "gdig.selection.allocation",
             "gdig.selection.diversity", "gdig.selection.baselines", "gdig.selection.outputs")


@task(name="quality", cache_policy=stage_policy(
    "quality", sections=("selection.gamma", "selection.hq_multiple", "selection.quality", "selection.budgets"),
    modules=("gdig.selection.quality", "gdig.pipeline"),
))
def quality(cfg: GdigConfig, scoring: dict) -> dict:
    """D_hq per budget: candidates that help at least a fraction gamma of the seeds (gamma fixed,
    or the largest one that keeps hq_multiple x budget candidates)."""
    from gdig.pipeline import quality_step

    with stage("quality"), open_store(cfg) as store:
        d_hq = quality_step(cfg, store, scoring["scoring_id"])
    return {"scoring_id": scoring["scoring_id"], **d_hq, "key": own_key()}


def selection_jobs(cfg: GdigConfig) -> list[tuple[str, int]]:
    """(strategy, budget) pairs of the config ("full" runs once)."""
    from gdig.pipeline import selection_jobs as jobs

    return jobs(cfg)


def reads_quality(strategy: str) -> bool:
    """Whether a strategy reads D_hq (γ, the quality score): gdig and quality."""
    from gdig.selection.select import USES_QUALITY

    return strategy in USES_QUALITY


def _settings_read(params: dict) -> dict:
    """The selection settings this strategy reads (a γ change leaves random, diversity, loss alone)."""
    from gdig.selection.outputs import strategy_settings

    return strategy_settings(params["strategy"], params["cfg"].selection)


@task(name="cluster-resample", cache_policy=stage_policy(
    "cluster_resample", sections=(), modules=SELECTION, extra=_settings_read,
))
def cluster_resample(cfg: GdigConfig, scoring: dict, quality: dict | None, strategy: str, budget: int) -> dict:
    """One selection: K-means over D_hq's sketches, resampling across clusters (or a baseline);
    `quality` (D_hq per budget) is given to the strategies that read it, None to the others."""
    from gdig.pipeline import selection_step

    with stage(f"cluster-resample {strategy}-{budget}"), open_store(cfg) as store:
        sid = selection_step(cfg, store, scoring["scoring_id"], strategy, budget)
        size = len(store.selection(sid))
    return {"selection_id": sid, "strategy": strategy, "budget": budget, "size": size, "key": own_key()}


@task(name="export", cache_policy=stage_policy("export", sections=(), modules=SELECTION))
def export(cfg: GdigConfig, selection: dict) -> dict:
    """The selected training set as JSONL (input schema + score fields)."""
    from gdig.pipeline import export_step

    with stage(f"export {selection['strategy']}-{selection['budget']}"), open_store(cfg) as store:
        path = export_step(cfg, store, selection["selection_id"])
    return {**selection, "path": path, "key": own_key()}


@task(name="summarize-selection", cache_policy=stage_policy(
    "summarize_selection", sections=("selection",), modules=SELECTION + ("gdig.selection.summary",),
))
def summarize(cfg: GdigConfig, scoring: dict, exports: list[dict]) -> dict:
    """Pool, D_hq, clusters and per-selection counts (and noise figures when labels exist)."""
    from gdig.pipeline import summary_step

    with stage("summarize-selection"), open_store(cfg) as store:
        summary = summary_step(cfg, store, scoring["scoring_id"], [e["selection_id"] for e in exports],
                               {e["selection_id"]: e["path"] for e in exports})
    return {"summary": summary.to_dict(), "text": summary.render(), "key": own_key()}
