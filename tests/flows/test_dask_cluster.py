"""A Dask cluster that is not one process tree: `dask scheduler` and two `dask worker ADDRESS`
processes started on their own, the workspace on a path all of them read, and `gdig select`
(the Prefect flow) with `orchestration.task_runner: dask` and the scheduler's address.

One worker kills itself (SIGKILL, gdig.faults) after its first scoring batch and stays dead (no
nanny to restart it); the run must still complete on the other worker, with selections byte for
byte those of the plain run (`--no-prefect`) on the same data.  What recovers the shard is the
Dask scheduler, which hands a lost worker's tasks to the workers left (seen: every score-shard
task run Completed at its first Prefect run); Prefect's retries (on here) cover a task that
raises.  Every process does its torch work on one thread, so float sums are ordered the same.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_flows import build_workspace, run, states_by_stage

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_harness")]

ROOT = Path(__file__).resolve().parents[2]
DASK = Path(sys.executable).with_name("dask")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(ROOT), **extra)
    env.pop("GDIG_KILL_AT", None)
    env.update(extra)
    return env


def _wait_for_workers(address: str, n: int, timeout: float = 120.0) -> None:
    from distributed import Client

    with Client(address, timeout=timeout) as client:
        client.wait_for_workers(n, timeout=timeout)


@pytest.fixture()
def cluster(tmp_path):
    """(address, the worker that will be killed, the other worker); all stopped afterwards."""
    if not DASK.exists():
        pytest.skip(f"no dask command beside {sys.executable}")
    address = f"tcp://127.0.0.1:{_free_port()}"
    logs = tmp_path / "dask-logs"
    logs.mkdir()
    procs = []

    def start(name: str, args: list[str], env: dict) -> subprocess.Popen:
        log = open(logs / f"{name}.log", "w")
        p = subprocess.Popen([str(DASK), *args], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
        procs.append(p)
        return p

    start("scheduler", ["scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                        "--no-dashboard", "--no-show"], _env())
    worker = ["worker", address, "--nthreads", "1", "--no-dashboard", "--no-nanny", "--death-timeout", "60"]
    doomed = start("doomed", [*worker, "--name", "doomed"], _env(GDIG_KILL_AT="scoring@1"))
    steady = start("steady", [*worker, "--name", "steady"], _env())
    try:
        _wait_for_workers(address, 2)
        yield address, doomed, steady
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def _exports(config: Path, overrides: list[str]) -> dict[str, bytes]:
    from gdig.config import load_config

    folder = Path(load_config(config, overrides).workspace.dir) / "selections"
    return {f.name: f.read_bytes() for f in sorted(folder.glob("*.jsonl"))}


def test_select_on_separate_dask_processes_survives_a_killed_worker(tmp_path, cluster):
    import torch

    from gdig_flows.flows.select import select_flow
    from gdig.config import load_config
    from gdig.pipeline import select_pipeline

    address, doomed, steady = cluster
    config = build_workspace(tmp_path / "shared")
    # 96 rows in 6 score shards and retries for the task the dead worker held
    common = ["influence.scoring.shard_size=16", "orchestration.retries=2", "orchestration.retry_delay_seconds=[0]"]
    plain = [*common, "workspace.db=plain/gdig.duckdb", "workspace.dir=plain/artifacts"]
    dask = [*common, "orchestration.task_runner=dask", f"orchestration.address={address}",
            "workspace.db=dask/gdig.duckdb", "workspace.dir=dask/artifacts"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        select_pipeline(load_config(config, plain), progress=False)
        state, states = run(select_flow, config, dask)
    finally:
        torch.set_num_threads(threads)

    assert doomed.wait(timeout=60) == -signal.SIGKILL  # it died in a scoring shard ...
    assert steady.poll() is None  # ... and the other worker finished the run
    by_stage = states_by_stage(states)
    assert by_stage["score-shard"].count("Completed") == 6, by_stage
    assert {s["strategy"] for s in state.result()["selections"]} == {"gdig", "random"}
    plain_files, dask_files = _exports(config, plain), _exports(config, dask)
    assert len(plain_files) == 2 and plain_files == dask_files
