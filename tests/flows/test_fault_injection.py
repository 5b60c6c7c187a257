"""kill -9 at named points (gdig.faults), the same command again: it completes, redoes only what
was unfinished, and ends byte-identical to an uninterrupted run (tests/flows/fault_harness.py).

CI runs the hook's own tests and one point (a kill mid-epoch in the pool finetune, plain
executor); the full table (19 points x both executors, in-write ones included) is marked slow:
`pytest --runslow tests/flows/test_fault_injection.py` or `python tests/flows/fault_harness.py`.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

import fault_harness as fh

PASSES = """
from gdig import faults
from gdig.progress import Tracker
with faults.stage("score-shard"):
    t = Tracker("scoring", total=3, enabled=False)
    for _ in range(3):
        t.update()
    t.close()
with faults.stage("score-shard"):
    pass
print("ran to the end")
"""


def _passes(tmp_path, **env):
    import os

    return subprocess.run([sys.executable, "-c", PASSES], env={**os.environ, **env}, capture_output=True, text=True,
                          cwd=tmp_path)


def test_points_are_passed_in_order_and_traced(tmp_path):
    trace = tmp_path / "trace"
    res = _passes(tmp_path, GDIG_TRACE_POINTS=str(trace))
    assert res.returncode == 0 and "ran to the end" in res.stdout
    assert trace.read_text().splitlines() == ["score-shard", "scoring@1", "scoring@2", "scoring@3", "score-shard/done",
                                              "score-shard", "score-shard/done"]
    assert fh.trace_counts(trace) == ({"score-shard": 2}, {"scoring": 3})


@pytest.mark.parametrize("point,killed", [("scoring@2", True), ("score-shard/done#2", True), ("score-shard#3", False),
                                          ("scoring@4", False)])
def test_a_kill_point_kills_the_process_there_with_sigkill(tmp_path, point, killed):
    trace = tmp_path / "trace"
    res = _passes(tmp_path, GDIG_KILL_AT=point, GDIG_TRACE_POINTS=str(trace))
    assert (res.returncode == -9) is killed and ("ran to the end" in res.stdout) is not killed
    if killed:
        assert trace.read_text().splitlines()[-1] == point.split("#")[0]  # died right at it


def test_unset_points_cost_nothing_and_never_kill(monkeypatch):
    from gdig import faults

    monkeypatch.delenv(faults.KILL_ENV, raising=False)
    monkeypatch.delenv(faults.TRACE_ENV, raising=False)
    before = dict(faults._passed)
    for _ in range(1000):
        faults.reached("finetune-pool@1")
    assert faults._passed == before  # not even counted


def test_kill_mid_epoch_in_the_pool_finetune_resumes_from_its_save_to_identical_selections(tmp_path):
    """CI's point: kill -9 at step 3 of the pool finetune's 4 (saved at 2); `gdig select
    --no-prefect` again redoes steps 3-4 only and ends with the uninterrupted run's exports."""
    h = fh.Harness(tmp_path, "plain", {})
    h.uninterrupted(("select",))
    out = h.point("pool finetune, mid-epoch", "select", "finetune-pool@3")
    assert (out.killed, out.resumed, out.identical) == (True, True, True), (out.error, out.differs)
    assert out.units["finetune-pool"] == 2  # resumed from the save at step 2, not from scratch
    assert out.units["scoring"] == 6 and h.baseline["select"][1]["scoring"] == 0  # scored once, after the kill only


@pytest.mark.slow
@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_harness")
def test_every_kill_point_under_both_executors_resumes_to_identical_bytes(tmp_path):
    from gdig_flows.tasks.runtime import BadInputError  # noqa: F401 (the Prefect side is importable)
    from test_failures import prefect_env

    outcomes, baselines = fh.run(tmp_path, fh.POINTS, list(fh.EXECUTORS), prefect_env())
    print(fh.table(outcomes, baselines))
    assert len(outcomes) == 2 * len(fh.POINTS) >= 38
    assert all(o.killed and o.resumed and o.identical for o in outcomes), fh.table(outcomes, baselines)


def _can_mount_in_a_namespace() -> bool:
    import shutil
    import subprocess

    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "d=$(mktemp -d) && mount -t tmpfs -o size=1m tmpfs $d "
                            "&& umount $d && rmdir $d"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount_in_a_namespace(), reason="needs `unshare -rm` (user and mount namespaces)")
def test_a_full_disk_fails_with_one_line_and_the_rerun_after_freeing_space_is_identical(tmp_path):
    """The workspace on a 2 MB tmpfs (a curvature file no longer fits): `gdig select
    --no-prefect` exits 2 with one error line naming the full device, no traceback; the tmpfs
    grown, the same command completes with the uninterrupted run's bytes (exports, selections,
    influence table, score matrix, curvature, seed products, prefilter verdicts)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "HF_HUB_OFFLINE": "1"}
    p = subprocess.run(["unshare", "-rm", sys.executable, str(fh.HERE / "fault_harness.py"), "--disk-full", "2m",
                        "--executors", "plain", "--work", str(tmp_path)], env=env, capture_output=True, text=True,
                       timeout=900)
    line = next((ln for ln in p.stdout.splitlines() if ln.startswith("plain:")), p.stdout[-3000:] + p.stderr[-3000:])
    assert p.returncode == 0, line
    assert "failed with one line True (error: no space left on the device writing " in line
    assert "rerun after space freed True; identical True" in line
