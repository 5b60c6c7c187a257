"""The `demo` flow: build the offline demo workspace (invented language pair, injected noise,
tiny model) in a directory, then run the whole `run` flow on it."""

from __future__ import annotations

from prefect import flow

from flows.run import run_flow
from tasks.data import demo_preparation


@flow(name="gdig-demo", log_prints=True)
def demo_flow(workdir: str, seed: int = 0, overrides: list[str] | None = None) -> dict:
    """End to end on generated data, offline."""
    prepare_demo = demo_preparation(workdir)  # cached in the workdir: a second demo run reuses it
    config = prepare_demo(workdir, seed)
    result = run_flow(config, overrides)
    return {**result, "config": config}
