"""The `run` flow: the select flow (a subflow), then the proof walked as Prefect tasks
(gdig.graph.prove): base-model, finetune-selection per selection (same steps per budget),
translate + metrics per eval set and model, report."""

from __future__ import annotations

from typing import Annotated

from prefect import flow
from pydantic import Field

from gdig_flows.flows.select import select_flow
from gdig import graph
from gdig.runlock import exclusive
from gdig_flows.tasks import load_settings, publish_comparison
from gdig_flows.tasks.executor import PrefectExecutor
from gdig_flows.tasks.naming import run_run_name


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
    with exclusive(cfg):  # held across the select subflow too (re-entrant in this process)
        selected = select_flow(config, overrides)
        result = graph.prove(PrefectExecutor(cfg), selected)
    publish_comparison(cfg, result["report"])
    return result
