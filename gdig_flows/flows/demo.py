"""The `demo` flow: build the offline demo workspace (invented language pair, injected noise,
tiny model) in a directory, then run the whole `run` flow on it."""

from __future__ import annotations

from typing import Annotated

from prefect import flow
from pydantic import Field

from gdig_flows.flows.run import run_flow
from gdig.demo.settings import split_demo_overrides
from gdig_flows.tasks.data import demo_preparation
from gdig_flows.tasks.naming import demo_run_name


@flow(name="gdig-demo", log_prints=True, flow_run_name=demo_run_name)
def demo_flow(
    workdir: Annotated[str, Field(examples=["./gdig-demo"])],
    seed: Annotated[int, Field(examples=[0])] = 0,
    overrides: Annotated[list[str] | None, Field(examples=[["selection.budgets=[200,500]"]])] = None,
) -> dict:
    """End to end on generated data, offline.

    Args:
        workdir: Directory of the demo workspace (created; a second run there reuses it).
        seed: Seed of the generated corpus, noise and tiny model.
        overrides: Keys of the generated config to override, KEY=VALUE (value parsed as YAML);
            demo.* keys (gdig/demo/config.yaml's `demo:` section) size the corpus and the model.
    """
    demo, rest = split_demo_overrides(overrides or [])  # demo.* sizes what prepare-demo generates
    prepare_demo = demo_preparation(workdir)  # cached in the workdir: a second demo run reuses it
    config = prepare_demo(workdir, seed, demo)
    result = run_flow(config, rest)
    return {**result, "config": config}
