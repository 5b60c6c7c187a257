"""Serve the gdig flows from this process (no work pool or worker needed).

    python deployments/serve.py --config configs/wmt-de-en.yaml [--set KEY=VALUE ...]

creates the deployments `gdig-select/nightly-select-served` (cron, nightly) and
`gdig-run/weekly-run-served` (cron, paused) on the Prefect server named by PREFECT_API_URL and
runs their flow runs here until interrupted (stopping it pauses these two).  Trigger one now
with `prefect deployment run 'gdig-select/nightly-select-served'`.  The work-pool deployments
of deployments/prefect.yaml are named `nightly-select` / `weekly-run`: the two paths never
overwrite or pause each other's deployments.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from prefect import serve
from prefect.schedules import Cron

from flows.run import run_flow
from flows.select import select_flow

NIGHTLY = "0 2 * * *"
WEEKLY = "0 4 * * SUN"
SUFFIX = "-served"  # served deployments: distinct from prefect.yaml's work-pool ones


def build_deployments(config: str, overrides: list[str] | None = None, *, nightly: str = NIGHTLY,
                      weekly: str = WEEKLY, timezone: str = "UTC") -> list:
    """The two deployments (not yet registered): nightly re-selection and a paused weekly run."""
    params = {"config": str(Path(config).resolve()), "overrides": list(overrides or [])}
    select = select_flow.to_deployment(
        name="nightly-select" + SUFFIX, parameters=params, tags=["gdig", "selection"],
        schedules=[Cron(nightly, timezone=timezone)],
        description="Nightly G-DIG re-selection (only new candidate shards are scored).",
    )
    run = run_flow.to_deployment(
        name="weekly-run" + SUFFIX, parameters=params, tags=["gdig", "evaluation"],
        schedules=[Cron(weekly, timezone=timezone, active=False)],
        description="Selection + finetune + evaluate + report (schedule paused by default).",
    )
    return [select, run]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="the workspace YAML config")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="KEY=VALUE override (repeatable)")
    parser.add_argument("--nightly", default=NIGHTLY, help=f"cron of the select deployment (default {NIGHTLY!r})")
    parser.add_argument("--weekly", default=WEEKLY, help=f"cron of the run deployment (default {WEEKLY!r})")
    parser.add_argument("--timezone", default="UTC", help="timezone of both schedules")
    args = parser.parse_args(argv)
    serve(*build_deployments(args.config, args.overrides, nightly=args.nightly, weekly=args.weekly,
                             timezone=args.timezone))


if __name__ == "__main__":
    main()
