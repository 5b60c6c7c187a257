"""Failures: bad input fails fast (no retry, exit 2, one line), killed runs end Crashed, the config
is the truth (no stale datasets), over-long rows are caught at ingest and named at select.

The Prefect tests reuse the session's one test server (conftest.prefect_harness); the
workspace is the small one of test_flows (built again here, in its own directory).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from test_flows import build_workspace

ROOT = Path(__file__).resolve().parents[2]


def write_config(path: Path, base: Path, **changes) -> Path:
    """A copy of the workspace config at `path`, with dotted keys replaced (relative paths kept
    relative to the original workspace)."""
    data = yaml.safe_load(base.read_text(encoding="utf-8"))
    for key, value in changes.items():
        node = data
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    for section in ("workspace",):
        for k, v in data[section].items():
            data[section][k] = str(path.parent / v)
    for role in ("candidates", "seed", "eval"):
        for src in data["data"].get(role, []):
            if not Path(src["path"]).is_absolute():
                src["path"] = str(base.parent / src["path"])
    if not Path(data["model"]["name_or_path"]).is_absolute() and (base.parent / data["model"]["name_or_path"]).exists():
        data["model"]["name_or_path"] = str(base.parent / data["model"]["name_or_path"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def child_env(**extra) -> dict:
    """The environment of a gdig child process.  It runs torch on as many threads as this test
    process does: a float reduction split over another number of threads can round differently
    (measured on a 2-core machine: the pool finetune's weights, hence every id downstream, differed
    between 1 and 2 threads), and tests compare the child's artifacts with in-process runs."""
    import torch

    return dict(os.environ, PYTHONPATH=str(ROOT), GDIG_PROGRESS="0", OMP_NUM_THREADS=str(torch.get_num_threads()),
                **extra)


def gdig(*args, env_extra: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """`python -m gdig.cli ARGS` in a fresh process: real stderr, real interpreter exit."""
    env = child_env(**(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "gdig.cli", *map(str, args)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def prefect_env() -> dict:
    from prefect.settings import PREFECT_API_URL

    return {"PREFECT_API_URL": PREFECT_API_URL.value()}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return build_workspace(tmp_path_factory.mktemp("failures"))


@pytest.fixture()
def empty_seed(workspace, tmp_path):
    seed = tmp_path / "seed.jsonl"
    seed.write_text("", encoding="utf-8")
    return write_config(tmp_path / "cfg" / "gdig.yaml", workspace,
                        **{"data.seed": [{"path": str(seed)}], "orchestration.retries": 2,
                           "orchestration.retry_delay_seconds": [30]})


# -- fail fast ---------------------------------------------------------------------------------

@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_harness")
def test_bad_input_stage_fails_at_once_without_retry(empty_seed):
    from gdig_flows.flows.select import select_flow
    from test_flows import task_states
    from gdig_flows.tasks.runtime import BadInputError

    state = select_flow(str(empty_seed), [], return_state=True)
    assert state.is_failed()
    with pytest.raises(BadInputError, match=r"^ingest: IngestError: .*seed.jsonl: empty file"):
        state.result()
    states = task_states(state.state_details.flow_run_id)
    assert states == [("ingest", "Failed", 1)]  # one attempt, although retries=2 (30 s backoff)


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_harness")
def test_cli_bad_input_exits_2_with_the_same_one_line_under_prefect_and_without(empty_seed):
    flow = gdig("select", empty_seed, "--no-progress", env_extra=prefect_env())
    plain = gdig("select", empty_seed, "--no-progress", "--no-prefect")
    assert (flow.returncode, plain.returncode) == (2, 2), flow.stderr[-3000:]
    assert plain.stderr.splitlines() == flow.stderr.splitlines()
    [line] = flow.stderr.splitlines()
    assert line.startswith("error: ") and "seed.jsonl: empty file" in line
    assert "prefect flow run: " in flow.stdout  # where the failed run is, on stdout
    assert "Traceback" not in flow.stdout + flow.stderr and "nanobind" not in flow.stderr
    debug = gdig("select", empty_seed, "--no-progress", "--no-prefect", "--debug")
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_missing_local_model_fails_fast_and_records_no_checkpoint(workspace, tmp_path):
    from gdig.config import load_config
    from gdig.modeling import ModelLoadError
    from gdig.pipeline import select_pipeline
    from gdig.store import Store

    config = write_config(tmp_path / "gdig.yaml", workspace, **{"model.name_or_path": "./no-such-model",
                                                                "pool_finetune.enabled": False})
    cfg = load_config(config)
    assert cfg.model.name_or_path == str(tmp_path / "no-such-model")  # a path: resolved, not a hub id
    with pytest.raises(ModelLoadError, match="no-such-model: no such file or directory"):
        select_pipeline(cfg, progress=False)
    with Store(cfg.workspace.db) as store:
        assert store.count("checkpoints") == 0


def test_max_length_above_the_model_position_limit_is_a_config_error(workspace, tmp_path):
    from gdig.config import ConfigError, load_config
    from gdig.train import check_model

    ok = load_config(write_config(tmp_path / "a.yaml", workspace))
    check_model(ok)  # the tiny model admits 512 positions; max_length 256
    cfg = load_config(write_config(tmp_path / "b.yaml", workspace, **{"prompt.max_length": 4096}))
    with pytest.raises(ConfigError, match=r"prompt.max_length 4096 is above the position limit 512"):
        check_model(cfg)


# -- the config is the truth ----------------------------------------------------------------------

def test_empty_or_missing_seed_section_is_a_config_error(workspace, tmp_path):
    from typer.testing import CliRunner

    from gdig.cli import app
    from gdig.config import ConfigError, load_config
    from gdig.pipeline import run_stage
    from gdig.store import Store

    config = write_config(tmp_path / "gdig.yaml", workspace, **{"data.seed": []})
    res = CliRunner().invoke(app, ["select", str(config), "--no-prefect", "--no-progress"])
    assert res.exit_code == 2
    assert res.stderr.strip() == ("error: data.seed: empty or missing; a selection needs at least one source "
                                  "here (data.seed: [{path: ...}])")
    with Store(tmp_path / "w.duckdb") as store, pytest.raises(ConfigError, match="data.seed: empty"):
        run_stage("ingest", load_config(config), store, progress=False)  # what the ingest task runs


def test_a_dataset_whose_sources_changed_is_rebuilt_never_reused(workspace, tmp_path):
    from gdig.config import load_config
    from gdig.data.ingest import ingest_config
    from gdig.store import Store

    rows = [json.loads(line) for line in (workspace.parent / "data" / "seed.jsonl").read_text().splitlines()]
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("".join(json.dumps(r) + "\n" for r in rows[:4]), encoding="utf-8")
    b.write_text("".join(json.dumps(r) + "\n" for r in rows[4:]), encoding="utf-8")

    def seed_srcs(*paths):
        cfg = load_config(write_config(tmp_path / "gdig.yaml", workspace,
                                       **{"data.seed": [{"path": str(p)} for p in paths]}))
        with Store(cfg.workspace.db) as store:
            ingest_config(cfg, store, progress=False)
            return list(store.dataset_examples("seed")["src"])

    assert seed_srcs(a) == [r["src"] for r in rows[:4]]
    assert seed_srcs(a, b) == [r["src"] for r in rows]  # a source added: appended
    assert seed_srcs(b) == [r["src"] for r in rows[4:]]  # a source removed: rebuilt, a's rows gone
    a.write_text(json.dumps(rows[0]) + "\n", encoding="utf-8")
    assert seed_srcs(a) == [rows[0]["src"]]  # a file edited in place: rebuilt from its new content
    assert seed_srcs(a) == [rows[0]["src"]]  # unchanged: a no-op


# -- over-long input --------------------------------------------------------------------------------

def test_a_2mb_line_is_rejected_at_ingest_with_file_and_line(tmp_path):
    from typer.testing import CliRunner

    from gdig.cli import app

    pool = tmp_path / "pool.jsonl"
    rows = [{"src": f"Satz {i}", "tgt": f"Sentence {i}"} for i in range(5)]
    rows.insert(3, {"src": "ab " * 700_000, "tgt": "x"})
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    args = ["ingest", "--db", str(tmp_path / "s.duckdb"), "--role", "candidates", "--name", "pool",
            "--src-lang", "de", "--tgt-lang", "en", "--no-progress", str(pool)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2
    assert f"{pool}:4: source is 2100000 characters > max_chars 20000" in res.stderr
    assert len(res.stderr.splitlines()) == 1
    res = CliRunner().invoke(app, args + ["--skip-invalid"])
    assert res.exit_code == 0 and "added 5" in res.stdout and "rejected 1" in res.stdout


def test_a_too_long_prompt_at_select_names_dataset_file_line_example_and_stage(workspace, tmp_path):
    from gdig.config import load_config
    from gdig.data.prompts import PromptTooLong
    from gdig.pipeline import select_pipeline
    from gdig.store import Store

    pool = tmp_path / "pool.jsonl"
    rows = [json.loads(line) for line in (workspace.parent / "data" / "pool.jsonl").read_text().splitlines()][:8]
    rows[5]["src"] = " ".join(["Aldric"] * 300)  # well under data.max_chars, far over max_length 64
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    cfg = load_config(write_config(tmp_path / "gdig.yaml", workspace, **{
        "data.candidates": [{"path": str(pool)}], "prompt.max_length": 64, "pool_finetune.enabled": False,
        "selection.budgets": [4]}))  # within the 8-row pool (a larger budget is a config error)
    with pytest.raises(PromptTooLong) as info:
        select_pipeline(cfg, progress=False)
    with Store(cfg.workspace.db) as store:
        example = store.dataset_examples("pool")["example_id"].iloc[5]
    msg = str(info.value)
    assert msg.startswith("curvature on 'pool': dataset 'pool', ")
    assert f"{pool}:6, example {example} (position 5): the prompt alone is" in msg


# -- no ghost runs -------------------------------------------------------------------------------------

GHOST = """
import sys, time
from pathlib import Path
import gdig.stages.model

def hang(*args, **kwargs):
    Path(sys.argv[2]).write_text("started")
    time.sleep(600)

gdig.stages.model.finetune_pool = hang  # finetune-pool hangs: the process is killed there
from gdig_flows.flows.select import select_flow
select_flow(sys.argv[1], [])
"""


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_harness")
def test_a_killed_flow_run_ends_crashed_when_gdig_next_starts(workspace, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from gdig.config import load_config
    from gdig_flows.tasks.ghosts import RUNS_DIR, crash_ghost_runs

    config = write_config(tmp_path / "gdig.yaml", workspace)
    pid = run_until(GHOST, config, tmp_path / "started")  # killed inside finetune-pool
    cfg = load_config(config)
    [record] = (Path(cfg.workspace.dir) / RUNS_DIR).glob("*.json")
    run_id = json.loads(record.read_text())["flow_run_id"]
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(run_id).state.name == "Running"  # the ghost
        assert crash_ghost_runs(cfg) == [run_id]  # what every gdig flow does first on this workspace
        state = client.read_flow_run(run_id).state
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
    assert state.name == "Crashed"
    assert f"pid {pid}" in state.message and "is gone" in state.message
    by_name = {t.name.split(" ")[0]: t.state.name for t in tasks}  # task runs: "<stage> <what>"
    assert by_name == {"ingest": "Completed", "prefilter": "Completed", "finetune-pool": "Crashed"}  # Running when killed
    assert not record.exists() and crash_ghost_runs(cfg) == []


# -- what still retries ----------------------------------------------------------------------------

def test_only_bad_input_escapes_retries():
    from prefect.states import Failed

    from gdig.data.ingest import IngestError
    from gdig.store import StoreError
    from gdig_flows.tasks.runtime import BadInputError, StageError, retry_unless_bad_input, stage

    def failed(err):
        try:
            with stage("ingest"):
                raise err
        except StageError as wrapped:
            return wrapped, Failed(data=wrapped)

    lock, lock_state = failed(StoreError("gdig.duckdb: cannot open the store (...); another process may hold it"))
    bad, bad_state = failed(IngestError("seed.jsonl: empty file"))
    assert type(lock) is StageError and retry_unless_bad_input(None, None, lock_state) is True
    assert type(bad) is BadInputError and retry_unless_bad_input(None, None, bad_state) is False
    assert str(bad) == "ingest: IngestError: seed.jsonl: empty file" and bad.cause == "seed.jsonl: empty file"


LOCK_HOLDER = """
import sys, time
from pathlib import Path
from gdig.store import Store
with Store(sys.argv[1]):
    Path(sys.argv[2]).write_text("locked")
    time.sleep(120)
"""


def test_a_store_held_by_another_process_is_a_stage_failure_with_a_clear_message(workspace, tmp_path):
    from gdig.config import load_config

    config = write_config(tmp_path / "gdig.yaml", workspace)
    db, marker = load_config(config).workspace.db, tmp_path / "locked"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, db, str(marker)], env=env)
    try:
        for _ in range(240):
            if marker.exists() or holder.poll() is not None:
                break
            time.sleep(0.5)
        res = gdig("select", config, "--no-progress", "--no-prefect")
    finally:
        holder.kill()
        holder.wait()
    assert res.returncode == 1  # not bad input: a retry (or a later run) can succeed
    [line] = res.stderr.splitlines()
    assert line.startswith(f"error: StoreError: {db}: cannot open the store") and "another process holds it" in line


HANG_IN_SCORING = """
import sys, time
from pathlib import Path
import gdig.influence.compute as engine

real = engine.score_rows

def hang_on_second_shard(cfg, checkpoint_path, products_path, rows, out_path, **kw):
    if int(rows["position"].iloc[0]) == 32:
        Path(sys.argv[2]).write_text("scoring")
        time.sleep(600)
    return real(cfg, checkpoint_path, products_path, rows, out_path, **kw)

engine.score_rows = hang_on_second_shard
from gdig_flows.flows.select import select_flow
select_flow(sys.argv[1], [])
"""


def run_until(script: str, config: Path, marker: Path) -> int:
    """Run `script` on config in a fresh process until it writes marker, then kill -9 it."""
    env = child_env(**prefect_env())
    proc = subprocess.Popen([sys.executable, "-c", script, str(config), str(marker)], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(1200):  # no timing is asserted: just wait for the marker
            if marker.exists() or proc.poll() is not None:
                break
            time.sleep(0.5)
        assert marker.exists(), "the flow never got there"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    return proc.pid


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_harness")
def test_kill_9_in_scoring_the_rerun_crashes_the_ghost_and_resumes_to_identical_selections(workspace, tmp_path):
    from prefect.client.orchestration import get_client

    from gdig_flows.flows.select import select_flow
    from gdig.config import load_config
    from test_flows import states_by_stage, task_states
    from gdig_flows.tasks.ghosts import RUNS_DIR

    killed = write_config(tmp_path / "killed" / "gdig.yaml", workspace)
    cfg = load_config(killed)
    pid = run_until(HANG_IN_SCORING, killed, tmp_path / "scoring")
    [record] = (Path(cfg.workspace.dir) / RUNS_DIR).glob("*.json")
    ghost = json.loads(record.read_text())["flow_run_id"]

    state = select_flow(str(killed), [], return_state=True)  # gdig starts again on the workspace
    assert state.is_completed()
    with get_client(sync_client=True) as client:
        crashed = client.read_flow_run(ghost).state
    assert crashed.name == "Crashed" and f"pid {pid}" in crashed.message
    by_stage = states_by_stage(task_states(state.state_details.flow_run_id))
    assert by_stage["score-shard"] == ["Cached", "Completed", "Completed"]  # shard [0, 32) was done

    fresh = write_config(tmp_path / "fresh" / "gdig.yaml", workspace)
    assert select_flow(str(fresh), [], return_state=True).is_completed()
    exports = sorted(p.name for p in (Path(cfg.workspace.dir) / "selections").glob("*.jsonl"))
    assert [n.rsplit("-", 1)[0] for n in exports] == ["gdig-16", "random-16"]  # <strategy>-<budget>-<settings hash>
    for name in exports:
        assert (Path(cfg.workspace.dir) / "selections" / name).read_bytes() == \
            (Path(load_config(fresh).workspace.dir) / "selections" / name).read_bytes()
