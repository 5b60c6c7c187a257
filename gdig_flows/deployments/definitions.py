"""The deployments of gdig, defined once: `serve.py` serves them from one process, and
`prefect.yaml` (work pool + worker) is generated from them:

    python -m gdig_flows.deployments.definitions > gdig_flows/deployments/prefect.yaml

(tests/flows/test_flows.py checks that the file is what this prints).  Both take the config as
it is: no deployment carries overrides of its own, so the nightly selection and the weekly proof
work on the same budgets and strategies, the config's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

PREFECT_VERSION = "3.9.1"
WORK_POOL = "gdig-local"
EXAMPLE_CONFIG = "configs/wmt-de-en.yaml"  # prefect.yaml's default `config` parameter
SERVED_SUFFIX = "-served"  # served deployments: distinct names, so the two paths never overwrite or pause each other


@dataclass(frozen=True)
class Deployment:
    name: str
    entrypoint: str  # "<file>:<flow function>", from the repository root
    description: str
    tags: tuple[str, ...]
    cron: str
    active: bool  # False: the schedule is paused until enabled in the UI
    when: str  # the schedule in words (a comment in prefect.yaml)

    @property
    def flow_module(self) -> str:
        return self.entrypoint.split(":")[0].removesuffix(".py").replace("/", ".")

    @property
    def flow_name(self) -> str:
        return self.entrypoint.split(":")[1]


DEPLOYMENTS: tuple[Deployment, ...] = (
    Deployment("nightly-select", "gdig_flows/flows/select.py:select_flow",
               "Nightly G-DIG re-selection: ingest new candidates, score only the new shards, re-select every "
               "strategy x budget.", ("gdig", "selection"), "0 2 * * *", True, "every night at 02:00"),
    Deployment("weekly-run", "gdig_flows/flows/run.py:run_flow",
               "Selection + proof: finetune on every selection, translate and score the eval sets, write the report.",
               ("gdig", "evaluation"), "0 4 * * SUN", False, "Sundays at 04:00, paused until you enable it in the UI"),
)

HEADER = f"""\
# Prefect deployments of gdig (Prefect {PREFECT_VERSION}), run by a worker of a process work pool.
# GENERATED from gdig_flows/deployments/definitions.py: edit that, then
#   python -m gdig_flows.deployments.definitions > gdig_flows/deployments/prefect.yaml
# From the repository root:
#   prefect work-pool create {WORK_POOL} --type process     # once
#   prefect deploy --prefect-file gdig_flows/deployments/prefect.yaml --all     # or --name nightly-select
#   prefect worker start --pool {WORK_POOL}                  # runs the scheduled / triggered flow runs
#   prefect deployment run 'gdig-select/nightly-select'     # a run now, besides the schedule
# Or, with no work pool and no worker: python gdig_flows/deployments/serve.py --config CONFIG, which serves
# the same deployments as `nightly-select{SERVED_SUFFIX}` / `weekly-run{SERVED_SUFFIX}` (other names: the two
# paths never overwrite or pause each other's deployments).
# Parameters: `config` (the workspace YAML) and `overrides` (KEY=VALUE, as `gdig ... --set`);
# the run form shows their descriptions and examples.
# Re-selection is cheap: tasks are cached by content, so a nightly run after new candidates
# were appended scores only the new shards (docs/operating.md "What a re-run recomputes", docs/DESIGN.md).
name: gdig
prefect-version: {PREFECT_VERSION}

build: null
push: null

# flow code is the installed gdig checkout: runs start in the directory `prefect deploy` ran in
pull:
  - prefect.deployments.steps.set_working_directory:
      directory: "{{{{ $PWD }}}}"

deployments:
"""


def _entry(d: Deployment) -> str:
    return f"""\
  - name: {d.name}
    description: {json.dumps(d.description)}
    entrypoint: {d.entrypoint}
    tags: [{", ".join(d.tags)}]
    parameters:
      config: {EXAMPLE_CONFIG}
      overrides: []
    schedules:
      - cron: {json.dumps(d.cron)}  # {d.when}
        timezone: UTC
        active: {str(d.active).lower()}
    work_pool:
      name: {WORK_POOL}
      work_queue_name: default
      job_variables: {{}}
"""


def prefect_yaml() -> str:
    """The text of gdig_flows/deployments/prefect.yaml."""
    return HEADER + "\n".join(_entry(d) for d in DEPLOYMENTS)


if __name__ == "__main__":
    print(prefect_yaml(), end="")
