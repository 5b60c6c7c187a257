"""The `run` flow: select, then finetune the base model on every selection (same steps per
budget), translate every eval set, score it, and write the comparison report."""

from __future__ import annotations

from typing import Annotated

from prefect import flow
from pydantic import Field

from flows.select import select_flow
from tasks import load_settings, publish_comparison, stages_for
from tasks.naming import run_run_name


@flow(name="gdig-run", log_prints=True, flow_run_name=run_run_name)
def run_flow(
    config: Annotated[str, Field(examples=["configs/wmt-de-en.yaml", "/srv/gdig/wmt-de-en/gdig.yaml"])],
    overrides: Annotated[list[str] | None, Field(examples=[["selection.budgets=[1000,5000]"],
                                                            ["evaluate.comet.model=Unbabel/wmt22-comet-da"]])] = None,
) -> dict:
    """Selection and its proof: strategies x budgets finetuned and evaluated.

    Args:
        config: Path of the workspace YAML config, as the worker sees it (relative paths are
            resolved against the directory `prefect deploy` or `serve.py` ran in).
        overrides: Config keys to override, KEY=VALUE with the value parsed as YAML, as
            `gdig run --set` takes them; empty: the config as it is.
    """
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
