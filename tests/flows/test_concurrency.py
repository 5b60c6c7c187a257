"""Four `gdig select` runs started at once against one Prefect server (the session's test server).

On one workspace they stay consistent: a run holds the workspace (gdig.runlock) and every other
fails at once with the lock's one line (exit 1), or completes after it; one result, an intact
store that a later run takes entirely from the cache.  On four workspaces (slow) they are
independent: each ends Completed, with the same selections.
"""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from test_failures import ROOT, child_env, prefect_env, write_config
from test_flows import build_workspace

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_harness")]
BUSY = "the workspace is in use by another gdig run"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return build_workspace(tmp_path_factory.mktemp("concurrency"))


def start_at_once(configs: list[Path]) -> list[tuple[subprocess.CompletedProcess, float]]:
    """`gdig select CONFIG` for every config, all started before any is waited for; (result, seconds)."""
    env = child_env(**prefect_env())
    t0 = time.monotonic()
    procs = [subprocess.Popen([sys.executable, "-m", "gdig.cli", "select", str(c), "--no-progress"], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in configs]

    def wait(p):  # each in its own thread, so that the seconds are when it ended
        stdout, stderr = p.communicate(timeout=900)
        return subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr), time.monotonic() - t0

    with ThreadPoolExecutor(len(procs)) as pool:
        return list(pool.map(wait, procs))


def flow_state(stdout: str) -> str:
    """The state the CLI reports for its flow run ("prefect flow run: <id> (<state>, N s)")."""
    [line] = [ln for ln in stdout.splitlines() if ln.startswith("prefect flow run: ")]
    return line.split("(", 1)[1].split(",")[0]


def exports(config: Path) -> dict[str, bytes]:
    from gdig.config import load_config

    ws = Path(load_config(config).workspace.dir) / "selections"
    return {p.name: p.read_bytes() for p in sorted(ws.glob("*.jsonl"))}


def test_four_selects_on_one_workspace_end_consistent(workspace, tmp_path):
    from gdig_flows.flows.select import select_flow
    from gdig.config import load_config
    from gdig.store import Store
    from test_flows import states_by_stage, task_states

    config = write_config(tmp_path / "gdig.yaml", workspace)
    results = start_at_once([config] * 4)
    done = [r for r, _ in results if r.returncode == 0]
    busy = [(r, s) for r, s in results if r.returncode != 0]
    assert done, [r.stderr[-2000:] for r, _ in results]
    assert all(flow_state(r.stdout) == "Completed" for r in done)
    winner_s = min(s for r, s in results if r.returncode == 0)
    for r, seconds in busy:
        assert r.returncode == 1, r.stderr[-2000:]
        [line] = r.stderr.strip().splitlines()  # one line, no traceback
        assert line.startswith("error: flow select Failed: ") and BUSY in line, line
        assert flow_state(r.stdout) == "Failed"
        assert seconds < winner_s  # at once: while the winner still ran
    with Store(load_config(config).workspace.db) as store:  # one result, nothing half-written
        sel = store.table("selections")
        assert sorted(sel.groupby(["strategy", "budget"])["selection_id"].nunique().items()) == \
            [(("gdig", 16), 1), (("random", 16), 1)]
        assert store.count("scorings") == 1 and store.count("curvature") == 1
    again = select_flow(str(config), [], return_state=True)
    assert again.is_completed()
    by_stage = states_by_stage(task_states(again.state_details.flow_run_id))
    assert {s for states in by_stage.values() for s in states} == {"Cached"}  # the result stands whole


@pytest.mark.slow
def test_four_selects_on_four_workspaces_each_complete(workspace, tmp_path):
    configs = [write_config(tmp_path / f"w{i}" / "gdig.yaml", workspace) for i in range(4)]
    results = start_at_once(configs)
    assert [r.returncode for r, _ in results] == [0] * 4, [r.stderr[-2000:] for r, _ in results]
    assert [flow_state(r.stdout) for r, _ in results] == ["Completed"] * 4
    first = exports(configs[0])
    assert len(first) == 2 and all(exports(c) == first for c in configs[1:])  # independent, equal


def test_the_workspace_lock_is_reentrant_in_a_process_and_exclusive_across_processes(workspace, tmp_path):
    from gdig.config import load_config
    from gdig.runlock import WorkspaceBusy, exclusive, lock_path

    cfg = load_config(write_config(tmp_path / "gdig.yaml", workspace))
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom gdig.config import load_config\nfrom gdig.runlock import exclusive\n"
         "with exclusive(load_config(sys.argv[1])):\n    print('held', flush=True)\n    time.sleep(60)", str(tmp_path / "gdig.yaml")],
        env=child_env(), cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(WorkspaceBusy, match=rf"{cfg.workspace.db}: {BUSY} \(pid {holder.pid} on "):
            with exclusive(cfg):
                pass
    finally:
        holder.kill()  # kill -9: the kernel drops the lock with the process
        holder.wait()
    with exclusive(cfg), exclusive(cfg):  # free again, and re-entrant (run flow -> select subflow)
        assert lock_path(cfg.workspace.db).exists()
