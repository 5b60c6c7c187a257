"""The proof: translate each eval set with each finetuned model, score it, write the report."""

from __future__ import annotations

from prefect import task

from gdig.config import GdigConfig
from tasks.executor import call_stage
from tasks.keys import stage_policy


@task(name="translate", cache_policy=stage_policy("translate"))
def translate(cfg: GdigConfig, checkpoint: dict, eval_set: dict) -> dict:
    """Hypotheses for one eval set (eval_set = its fingerprint) by one checkpoint."""
    return call_stage("translate", cfg, f"translate {eval_set['name']} by {checkpoint['checkpoint_id']}",
                      checkpoint=checkpoint, eval_set=eval_set)


@task(name="metrics", cache_policy=stage_policy("metrics"))
def metrics(cfg: GdigConfig, checkpoint: dict, translation: dict) -> dict:
    """BLEU / chrF (sacrebleu, signatures stored) and COMET when available."""
    return call_stage("metrics", cfg, f"metrics {translation['eval_set']} by {checkpoint['checkpoint_id']}",
                      checkpoint=checkpoint, translation=translation)


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


@task(name="report", cache_policy=stage_policy("report"))  # uncached: every run writes its own report
def report(cfg: GdigConfig, summary: dict, metrics: list[dict]) -> dict:
    """The run's HTML + markdown report with plots and the comparison table (CSV + markdown), in
    {workspace.dir}/reports/<run>/ and reports/latest, named and headed by this flow run."""
    return call_stage("report", cfg, run=run_identity(cfg), summary=summary, metrics=metrics)
