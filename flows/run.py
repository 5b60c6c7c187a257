"""The `run` flow: select, then finetune the base model on every selection (same steps per
budget), translate every eval set, score it, and write the comparison report."""

from __future__ import annotations

from prefect import flow

from flows.select import select_flow
from tasks import load_settings, publish_comparison, stages_for


@flow(name="gdig-run", log_prints=True)
def run_flow(config: str, overrides: list[str] | None = None) -> dict:
    """Selection and its proof: strategies x budgets finetuned and evaluated."""
    cfg = load_settings(config, overrides)
    selected = select_flow(config, overrides)
    t = stages_for(cfg)

    base = t.base_model(cfg)  # the reference row: no finetuning
    baseline = [t.metrics(cfg, base, t.translate(cfg, base, eval_set)) for eval_set in selected["data"]["eval"]]

    scores = []
    for selection in selected["selections"]:
        model = t.finetune_selection(cfg, selection)
        for eval_set in selected["data"]["eval"]:
            hypotheses = t.translate(cfg, model, eval_set)
            scores.append(t.metrics(cfg, model, hypotheses))

    report = t.report(cfg, selected["summary"], scores)
    publish_comparison(cfg, report)
    return {**selected, "metrics": scores, "baseline": baseline, "report": report}
