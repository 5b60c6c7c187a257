"""Stage 7, the proof: translate each eval set with each model, score it, write the report."""

from __future__ import annotations

from gdig.stages import StageContext


def translate(ctx: StageContext, checkpoint: dict, eval_set: dict) -> dict:
    """Hypotheses for one eval set (eval_set = its fingerprint) by one checkpoint."""
    from gdig.evaluate import translate_eval_set

    n = translate_eval_set(ctx.cfg, ctx.store, checkpoint, eval_set["name"], ctx.settings_key, progress=ctx.progress)
    return {"checkpoint_id": checkpoint["checkpoint_id"], "eval_set": eval_set["name"], "n_rows": n}


def metrics(ctx: StageContext, checkpoint: dict, translation: dict) -> dict:
    """BLEU / chrF (sacrebleu, signatures stored) and COMET when available; the base model's
    rows carry no strategy, so they stay out of the comparison table."""
    from gdig.evaluate import score_eval_set

    out = score_eval_set(ctx.cfg, ctx.store, checkpoint, translation["eval_set"], strategy=checkpoint.get("strategy"),
                        budget=checkpoint.get("budget"), selection_id=checkpoint.get("selection_id"))
    return {**out, "strategy": checkpoint.get("strategy"), "budget": checkpoint.get("budget")}


def report(ctx: StageContext, summary: dict, metrics: list[dict]) -> dict:
    """The run's HTML + markdown report with plots and the comparison table (CSV + markdown), in
    {workspace.dir}/reports/<run>/ and reports/latest; ctx.run names the run and heads the report."""
    from gdig.evaluate import comparison_table
    from gdig.report import run_header, write_run_report
    from gdig.runinfo import run_stamp

    run_id, head = ctx.run or (run_stamp(), run_header(ctx.cfg, "gdig run --no-prefect"))
    checkpoints = {m["checkpoint_id"] for m in metrics}  # this run's: the workspace keeps every run's
    # the γ each budget used (the setting may be "auto", a label, not a threshold)
    used = {int(r["budget"]): float(r["gamma"]) for r in summary["summary"].get("selections", [])
            if r.get("gamma") is not None}
    paths = {k: str(v) for k, v in write_run_report(ctx.store, ctx.workspace.reports, run_id, head, gamma=used,
                                                    checkpoints=checkpoints).items()}
    table = comparison_table(ctx.store, checkpoints)
    rows = table.reset_index().to_dict(orient="records") if not table.empty else []
    return {"paths": paths, "run_id": run_id, "table": rows, "notes": list(table.attrs.get("notes", []))}
