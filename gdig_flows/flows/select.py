"""The `select` flow: the stage order of gdig.graph.select (drawn in docs/DESIGN.md, "The stage
graph") walked as Prefect tasks, the mapped stages on the configured task runner."""

from __future__ import annotations

from typing import Annotated

from prefect import flow
from pydantic import Field

from gdig import graph
from gdig.runlock import exclusive
from gdig_flows.tasks import load_settings, publish_selection
from gdig_flows.tasks.executor import PrefectExecutor
from gdig_flows.tasks.naming import select_run_name
from gdig_flows.tasks.progress import log_to_run


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
    with exclusive(cfg):  # one run per workspace: a second one fails at once (gdig.runlock)
        selected = graph.select(PrefectExecutor(cfg))
    publish_selection(cfg, selected["data"], selected["quality"], selected["summary"], selected["selections"])
    log_to_run(selected["summary"]["text"])  # the run log; the terminal gets it once, from the gdig command
    return selected
