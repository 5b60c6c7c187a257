"""The proof: translate each eval set with each finetuned model, score it, write the report."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from gdig.config import GdigConfig
from tasks.keys import own_key, stage_policy
from tasks.progress import watch
from tasks.runtime import progress_bars, open_store, stage


@task(name="translate", cache_policy=stage_policy(
    "translate", sections=("languages", "model", "prompt", "evaluate.batch_size", "evaluate.num_beams",
                           "evaluate.max_new_tokens", "evaluate.length_ratio"),
    modules=("gdig.evaluate",),
))
def translate(cfg: GdigConfig, checkpoint: dict, eval_set: dict) -> dict:
    """Hypotheses for one eval set (eval_set = its fingerprint) by one checkpoint."""
    from gdig.evaluate import translate_stage

    with stage(f"translate {eval_set['name']} by {checkpoint['checkpoint_id']}"), watch(), open_store(cfg) as store:
        n = translate_stage(cfg, store, checkpoint, eval_set["name"], progress=progress_bars())
    return {"checkpoint_id": checkpoint["checkpoint_id"], "eval_set": eval_set["name"], "n_rows": n,
            "key": own_key()}


@task(name="metrics", cache_policy=stage_policy(
    "metrics", sections=("languages", "evaluate.comet"), modules=("gdig.evaluate",),
))
def metrics(cfg: GdigConfig, checkpoint: dict, translation: dict) -> dict:
    """BLEU / chrF (sacrebleu, signatures stored) and COMET when available."""
    from gdig.evaluate import metrics_stage

    with stage(f"metrics {translation['eval_set']} by {checkpoint['checkpoint_id']}"), open_store(cfg) as store:
        out = metrics_stage(cfg, store, checkpoint, translation["eval_set"], strategy=checkpoint.get("strategy"),
                            budget=checkpoint.get("budget"), selection_id=checkpoint.get("selection_id"))
    return {**out, "strategy": checkpoint.get("strategy"), "budget": checkpoint.get("budget"), "key": own_key()}


def report_dir(cfg: GdigConfig) -> Path:
    return Path(cfg.workspace.dir) / "report"


@task(name="report", cache_policy=stage_policy(
    "report", sections=("selection", "evaluate"), modules=("gdig.evaluate", "gdig.report"),
))
def report(cfg: GdigConfig, summary: dict, metrics: list[dict]) -> dict:
    """The HTML + markdown report with plots and the comparison table (CSV + markdown)."""
    from gdig.evaluate import comparison_table
    from gdig.report import write_report

    with stage("report"), open_store(cfg) as store:
        paths = {k: str(v) for k, v in write_report(store, report_dir(cfg)).items()}
        table = comparison_table(store)
    rows = table.reset_index().to_dict(orient="records") if not table.empty else []
    return {"paths": paths, "table": rows, "notes": list(table.attrs.get("notes", [])), "key": own_key()}
