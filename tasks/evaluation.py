"""The proof: translate each eval set with each finetuned model, score it, write the report."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

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


def run_identity(cfg: GdigConfig) -> tuple[str, dict]:
    """This flow run's report directory name (<UTC stamp>-<flow run id>) and report header:
    date, command (rebuilt from the flow's parameters), config, workspace, the flow run."""
    from prefect.runtime import flow_run

    from gdig.report import run_header
    from gdig.runinfo import run_stamp

    params = dict(flow_run.parameters or {})
    config = params.get("config")
    command = " ".join(["gdig run", str(config or "")] + [f"--set {o}" for o in params.get("overrides") or []])
    run_id = f"{run_stamp()}-{str(flow_run.id or 'local')[:8]}"
    head = run_header(cfg, command.strip(), config,
                      **{"prefect flow run": f"{flow_run.name} ({flow_run.id})"} if flow_run.id else {})
    return run_id, head


@task(name="report", cache_policy=NO_CACHE)  # every run writes its own report (a cached run too)
def report(cfg: GdigConfig, summary: dict, metrics: list[dict]) -> dict:
    """The run's HTML + markdown report with plots and the comparison table (CSV + markdown), in
    {workspace.dir}/reports/<run>/ and reports/latest."""
    from gdig.evaluate import comparison_table
    from gdig.report import reports_dir, write_run_report

    with stage("report"), open_store(cfg) as store:
        run_id, head = run_identity(cfg)
        paths = {k: str(v) for k, v in write_run_report(store, reports_dir(cfg), run_id, head,
                                                        gamma=summary["summary"].get("gamma")).items()}
        table = comparison_table(store)
    rows = table.reset_index().to_dict(orient="records") if not table.empty else []
    return {"paths": paths, "run_id": run_id, "table": rows, "notes": list(table.attrs.get("notes", [])),
            "key": own_key()}
