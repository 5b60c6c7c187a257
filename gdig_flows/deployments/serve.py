"""Serve the gdig flows from this process (no work pool or worker needed).

    python gdig_flows/deployments/serve.py --config configs/wmt-de-en.yaml [--set KEY=VALUE ...]

creates the deployments of gdig_flows/deployments/definitions.py, `gdig-select/nightly-select-served`
(cron, nightly) and `gdig-run/weekly-run-served` (cron, paused), on the Prefect server named by
PREFECT_API_URL and runs their flow runs here until interrupted (stopping it pauses these two).
Trigger one now with `prefect deployment run 'gdig-select/nightly-select-served'`.  The
work-pool deployments of gdig_flows/deployments/prefect.yaml (generated from the same definitions) are
named `nightly-select` / `weekly-run`: the two paths never overwrite or pause each other's
deployments.
"""

from __future__ import annotations

import argparse
from importlib import import_module
from pathlib import Path

from prefect import serve
from prefect.schedules import Cron

from gdig_flows.deployments.definitions import DEPLOYMENTS, SERVED_SUFFIX

NIGHTLY, WEEKLY = (d.cron for d in DEPLOYMENTS)


def build_deployments(config: str, overrides: list[str] | None = None, *, nightly: str = NIGHTLY,
                      weekly: str = WEEKLY, timezone: str = "UTC") -> list:
    """The deployments of gdig_flows/deployments/definitions.py (not yet registered), named `<name>-served`,
    with this config and overrides; `nightly` / `weekly`: their crons."""
    params = {"config": str(Path(config).resolve()), "overrides": list(overrides or [])}
    crons = {"nightly-select": nightly, "weekly-run": weekly}
    return [getattr(import_module(d.flow_module), d.flow_name).to_deployment(
        name=d.name + SERVED_SUFFIX, parameters=params, tags=list(d.tags), description=d.description,
        schedules=[Cron(crons.get(d.name, d.cron), timezone=timezone, active=d.active)]) for d in DEPLOYMENTS]


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
