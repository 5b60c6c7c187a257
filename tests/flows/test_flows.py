"""Orchestration: cached, retryable Prefect flows over the gdig stages.

One Prefect test server for the session (conftest.prefect_harness).  One small workspace
(96 noisy demo candidates, 6 seeds, 8 eval rows, a tiny Llama trained on the demo text,
shard_size 32 -> 3 shards) is shared by the tests below, which run in file order: each
reads the task-run states of its flow run from the Prefect API.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_harness")]

SELECT_STAGES = {"ingest", "prefilter", "finetune-pool", "plan-curvature", "curvature-shard", "fit-curvature", "seed-products",
                 "plan-shards", "score-shard",
                 "merge-scores", "quality", "cluster-resample", "export", "summarize-selection"}
EVAL_STAGES = {"base-model", "finetune-selection", "translate", "metrics", "report"}


# -- helpers -------------------------------------------------------------------------------------

def build_workspace(root: Path) -> Path:
    """Demo data + a tiny model trained on its text + a config; returns the config path."""
    from gdig.demo import generate_pairs, write_demo_data
    from gdig.modeling import build_tiny_model

    files = write_demo_data(root / "data", n_pool=96, n_seed=6, n_eval=8, n_general=60, noise_rate=0.3, seed=0)
    general = [json.loads(line) for line in open(files["general"], encoding="utf-8")]
    build_tiny_model([g["src"] + " " + g["tgt"] for g in general], root / "model", arch="llama",
                     hidden=32, intermediate=64, layers=2, heads=2)
    extra = generate_pairs(400, seed=7).iloc[-40:]  # disjoint from the files above
    for name, part in (("new_candidates", extra.iloc[:32]), ("eval2", extra.iloc[32:])):
        with open(root / "data" / f"{name}.jsonl", "w", encoding="utf-8") as fh:
            for rec in part.to_dict("records"):
                fh.write(json.dumps({"src_lang": "xa", "tgt_lang": "xb", **rec}) + "\n")
    cfg = {
        "workspace": {"db": "ws/gdig.duckdb", "dir": "ws/artifacts"},
        "languages": {"src": "xa", "tgt": "xb"},
        "data": {"candidates": [{"path": "data/pool.jsonl"}], "seed": [{"path": "data/seed.jsonl"}],
                 "eval": [{"path": "data/eval.jsonl"}]},
        "model": {"name_or_path": "model"},
        "prompt": {"template": "{src}\n=", "max_length": 256},
        "prefilter": {"enabled": False},  # the paper's pipeline: every row scored (test_prefilter_* turn it on)
        "pool_finetune": {"enabled": True, "max_steps": 2, "batch_size": 16},
        "influence": {"curvature": {"strategy": "kfac", "batch_size": 16},
                      "scoring": {"shard_size": 32, "batch_size": 16, "sketch_dim_g": 4, "sketch_dim_a": 4}},
        "selection": {"budgets": [16], "strategies": ["gdig", "random"], "gamma": 0.5},
        "finetune": {"max_steps": 2, "batch_size": 8},
        "evaluate": {"batch_size": 8, "max_new_tokens": 6},
        "orchestration": {"retries": 0, "retry_delay_seconds": [0]},
    }
    path = root / "gdig.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def _read_task_states(flow_run_id) -> list[tuple[str, str, int]]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterParentFlowRunId
    from prefect.client.schemas.sorting import FlowRunSort, TaskRunSort

    with get_client(sync_client=True) as client:
        ids = [flow_run_id]
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id])),
            limit=50, sort=FlowRunSort.START_TIME_ASC)
        ids += [c.id for c in children]
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)),
                                     limit=200, sort=TaskRunSort.EXPECTED_START_TIME_ASC)
    from gdig_flows.tasks.naming import stage_of

    return [(stage_of(r.name), r.state.name, r.run_count) for r in runs
            if r.state.state_details.child_flow_run_id is None]  # not a subflow's stand-in


def task_states(flow_run_id, quiet_s: float = 2.0, timeout_s: float = 60.0) -> list[tuple[str, str, int]]:
    """(stage, state name, run count) of every task run of a flow run and its subflows.

    Prefect 3 records task runs from events the client sends in the background, so right after
    a flow returns the server may not know its last task yet (seen on a loaded machine): read
    until the list has not changed for `quiet_s` seconds."""
    import time

    deadline = time.monotonic() + timeout_s
    last = _read_task_states(flow_run_id)
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = _read_task_states(flow_run_id)
        if now == last:
            return now
        last = now
    return last


def states_by_stage(states) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for stage, state, _ in states:
        out.setdefault(stage, []).append(state)
    return {k: sorted(v) for k, v in out.items()}


def run(flow, config: Path, overrides: list[str] | None = None, ok: bool = True):
    state = flow(str(config), list(overrides or []), return_state=True)
    assert state.is_completed() is ok, state.message
    return state, task_states(state.state_details.flow_run_id)


def influence_of(config: Path, overrides: list[str] | None = None) -> pd.DataFrame:
    from gdig.config import load_config
    from gdig.store import Store

    cfg = load_config(config, overrides)
    with Store(cfg.workspace.db) as store:
        sid = store.table("scorings").sort_values("created_at")["scoring_id"].iloc[-1]
        return store.influence(sid)


@pytest.fixture(scope="module", autouse=True)
def frozen_code_hashes():
    """Other work may edit gdig/ while these tests run; a module's source hash is read once per
    session here so the cache assertions see one version of the code (invalidation on a code
    change is tested on stage_key directly)."""
    import functools

    import gdig_flows.tasks.keys

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gdig_flows.tasks.keys, "module_source_hash", functools.lru_cache(None)(gdig_flows.tasks.keys.module_source_hash))
        yield


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return build_workspace(tmp_path_factory.mktemp("flows"))


@pytest.fixture(scope="module")
def first_select(workspace):
    """The first select run on the workspace: everything computed."""
    from gdig_flows.flows.select import select_flow

    state, states = run(select_flow, workspace)
    return state.result(), states, influence_of(workspace)


# -- caching ---------------------------------------------------------------------------------------

def test_first_run_computes_every_stage_once(first_select):
    result, states, scores = first_select
    by_stage = states_by_stage(states)
    assert set(by_stage) == SELECT_STAGES
    assert all(s == "Completed" for _, s, _ in states), by_stage
    assert by_stage["score-shard"] == ["Completed"] * 3  # 96 rows / shard_size 32
    assert by_stage["curvature-shard"] == ["Completed"] * 3  # K-FAC: one mapped pass over the same shards
    assert len(scores) == 96 and list(scores["position"]) == list(range(96))
    assert [(s["strategy"], s["budget"], s["size"]) for s in result["selections"]] == [("gdig", 16, 16), ("random", 16, 16)]


def test_second_identical_run_has_every_task_cached(workspace, first_select):
    from gdig_flows.flows.select import select_flow

    _, states = run(select_flow, workspace)
    assert states and all(s == "Cached" for _, s, _ in states), states_by_stage(states)
    assert set(states_by_stage(states)) == SELECT_STAGES


class _Payload:
    """Unpickling it creates a file: the proof that a pickle ran."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


def test_a_crafted_pickle_result_never_runs_and_the_stage_runs_again(workspace, first_select, tmp_path):
    from prefect._internal.result_records import ResultRecord, ResultRecordMetadata
    from prefect.serializers import PickleSerializer

    from gdig_flows.flows.select import select_flow
    from gdig.config import load_config
    from gdig.workspace import Workspace

    results = Workspace(load_config(workspace)).prefect_results
    [record] = [p for p in results.iterdir() if p.name.startswith("quality-")]
    assert json.loads(record.read_bytes())["metadata"]["serializer"] == {"type": "gdig-json"}  # what gdig writes
    marker = tmp_path / "pickle-ran"
    crafted = ResultRecord(metadata=ResultRecordMetadata(storage_key=str(record), serializer=PickleSerializer()),
                           result=_Payload(str(marker))).serialize()
    record.write_bytes(crafted)
    _, states = run(select_flow, workspace)
    assert not marker.exists()
    by_stage = states_by_stage(states)
    assert by_stage["quality"] == ["Completed"]  # the crafted record read as a miss: the stage ran again
    assert all(v == ["Cached"] * len(v) for k, v in by_stage.items() if k != "quality"), by_stage  # same key out
    assert json.loads(record.read_bytes())["metadata"]["serializer"] == {"type": "gdig-json"}
    assert influence_of(workspace).equals(first_select[2])
    ResultRecord.deserialize(crafted)  # the control: Prefect itself would have run it
    assert marker.exists()


def test_run_flow_then_changed_eval_set_recomputes_only_evaluation(workspace, first_select):
    from gdig_flows.flows.run import run_flow

    state, states = run(run_flow, workspace)
    by_stage = states_by_stage(states)
    assert {k: set(v) for k, v in by_stage.items() if k in SELECT_STAGES} == {k: {"Cached"} for k in SELECT_STAGES}
    assert set(by_stage) == SELECT_STAGES | EVAL_STAGES
    assert by_stage["finetune-selection"] == ["Completed"] * 2
    # base model + 2 finetuned models, one eval set
    assert by_stage["translate"] == ["Completed"] * 3 and by_stage["metrics"] == ["Completed"] * 3
    report = state.result()["report"]
    assert Path(report["paths"]["html"]).is_file()
    assert {r["strategy"] for r in report["table"]} == {"gdig", "random"}

    eval2 = ["data.eval=[{path: data/eval2.jsonl}]"]
    state, states = run(run_flow, workspace, eval2)
    by_stage = states_by_stage(states)
    assert by_stage["ingest"] == ["Completed"]  # new eval data ingested
    # the prefilter judges (and reports) the new eval set; what it decides for the pool is unchanged
    assert by_stage["prefilter"] == ["Completed"]
    unchanged = SELECT_STAGES - {"ingest", "prefilter"} | {"base-model", "finetune-selection"}
    assert {k: set(v) for k, v in by_stage.items() if k in unchanged} == {k: {"Cached"} for k in unchanged}
    assert by_stage["translate"] == ["Completed"] * 3 and by_stage["metrics"] == ["Completed"] * 3
    assert by_stage["report"] == ["Completed"]
    assert {m["eval_set"] for m in state.result()["metrics"]} == {"eval2"}


def test_demo_flow_prepares_its_workdir_once(workspace, first_select, monkeypatch, tmp_path):
    import gdig.demo
    from gdig_flows.flows.demo import demo_flow

    calls = []

    def prepare(workdir, seed=0, progress=True, demo_overrides=None):  # stands in for the slow real preparation
        calls.append((workdir, seed))
        return workspace

    monkeypatch.setattr(gdig.demo, "prepare_demo", prepare)
    workdir = str(tmp_path / "demo")
    for _ in range(2):
        state = demo_flow(workdir, 0, [], return_state=True)
        assert state.is_completed(), state.message
    assert calls == [(workdir, 0)]
    assert state.result()["config"] == str(workspace)
    states = task_states(state.state_details.flow_run_id)
    assert [s for stage, s, _ in states if stage == "prepare-demo"] == ["Cached"]
    assert Path(state.result()["report"]["paths"]["html"]).is_file()


def test_appended_candidates_score_only_the_new_shard(workspace, first_select):
    from gdig_flows.flows.select import select_flow

    _, _, before = first_select
    more = ["data.candidates=[{path: data/pool.jsonl}, {path: data/new_candidates.jsonl}]"]
    _, states = run(select_flow, workspace, more)
    by_stage = states_by_stage(states)
    for reused in ("finetune-pool", "plan-curvature", "fit-curvature", "seed-products"):
        assert by_stage[reused] == ["Cached"], (reused, by_stage)
    assert by_stage["curvature-shard"] == ["Cached"] * 3  # the reference pool's shards: no refit
    assert by_stage["score-shard"] == ["Cached"] * 3 + ["Completed"]  # 128 rows: only [96, 128) is new
    assert by_stage["merge-scores"] == ["Completed"]
    after = influence_of(workspace, more)
    assert len(after) == 128
    cols = ["example_id", "position", "loss", "helped_fraction", "mean", "min", "max"]
    pd.testing.assert_frame_equal(after.iloc[:96][cols].reset_index(drop=True), before[cols].reset_index(drop=True))


def test_stage_key_depends_on_content_not_identity(workspace):
    from gdig.config import load_config
    from gdig_flows.tasks.keys import stage_key

    cfg = load_config(workspace)
    frame = pd.DataFrame({"example_id": ["a", "b"], "position": [0, 1], "src": ["x", "y"]})
    key = lambda **kw: stage_key("s", kw.pop("cfg", cfg), {"rows": kw.pop("rows", frame), "x": {"k": 1}},  # noqa: E731
                                 sections=kw.pop("sections", ("influence.curvature",)),
                                 source=kw.pop("source", "def f(): pass"), uses_store=False)
    assert key() == key(cfg=load_config(workspace), rows=frame.copy())  # equal content, new objects
    assert key() == key(cfg=load_config(workspace, ["selection.gamma=0.3"]))  # a section it does not read
    assert key() != key(cfg=load_config(workspace, ["influence.curvature.damping=0.1"]))
    assert key() != key(rows=frame.assign(position=[1, 2]))
    assert key() != key(rows=frame.iloc[::-1])
    assert key() != key(source="def f(): return 1")  # the task's code


# -- failures ---------------------------------------------------------------------------------------

def test_stage_error_names_the_stage_and_cause():
    from gdig_flows.tasks.runtime import StageError, stage

    with pytest.raises(StageError, match=r"^fit-curvature: ValueError: dataset 'pool' is empty$") as info:
        with stage("fit-curvature"):
            raise ValueError("dataset 'pool' is empty")
    assert info.value.stage == "fit-curvature"
    assert isinstance(info.value.__cause__, ValueError)


def test_task_failing_once_succeeds_on_retry(workspace, first_select, monkeypatch):
    import gdig.selection.quality as quality_mod
    from gdig_flows.flows.select import select_flow

    real, calls = quality_mod.rank_by_quality, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("transient")
        return real(*args, **kwargs)

    monkeypatch.setattr(quality_mod, "rank_by_quality", flaky)
    # a new gamma: quality and everything after it must run; one retry without delay
    overrides = ["selection.gamma=0.4", "orchestration.retries=1", "orchestration.retry_delay_seconds=[0]"]
    _, states = run(select_flow, workspace, overrides)
    quality = [(s, n) for stage, s, n in states if stage == "quality"]
    assert quality == [("Completed", 2)]  # failed once, retried, succeeded
    assert len(calls) >= 2
    # the selections: gdig reads gamma and is recomputed, random does not and is Cached
    assert sorted(s for stage, s, _ in states if stage == "cluster-resample") == ["Cached", "Completed"]


def test_killed_flow_rerun_recomputes_only_the_failed_stage_and_after(workspace, first_select, monkeypatch):
    import gdig.influence.compute as engine
    from gdig_flows.flows.select import select_flow

    real = engine.score_rows

    def crash_on_second_shard(cfg, checkpoint_path, products_path, rows, out_path, **kw):
        if int(rows["position"].iloc[0]) == 32:
            raise MemoryError("worker killed")
        return real(cfg, checkpoint_path, products_path, rows, out_path, **kw)

    overrides = ["influence.scoring.sketch_seed=1"]  # new sketches: scoring and after must run
    monkeypatch.setattr(engine, "score_rows", crash_on_second_shard)
    state, states = run(select_flow, workspace, overrides, ok=False)
    with pytest.raises(Exception, match=r"score-shard \[32, 64\): MemoryError: worker killed"):
        state.result()
    by_stage = states_by_stage(states)
    assert by_stage["score-shard"] == ["Completed", "Completed", "Failed"]
    assert "merge-scores" not in by_stage

    monkeypatch.setattr(engine, "score_rows", real)
    _, states = run(select_flow, workspace, overrides)
    by_stage = states_by_stage(states)
    before = {"ingest", "prefilter", "finetune-pool", "plan-curvature", "curvature-shard", "fit-curvature",
              "seed-products", "plan-shards"}
    assert {k: set(v) for k, v in by_stage.items() if k in before} == {k: {"Cached"} for k in before}
    assert by_stage["score-shard"] == ["Cached", "Cached", "Completed"]
    after = SELECT_STAGES - before - {"score-shard"}
    assert {k: set(v) for k, v in by_stage.items() if k in after} == {k: {"Completed"} for k in after}


def test_prefilter_stage_is_cached_and_a_threshold_change_refits_nothing(workspace, first_select, tmp_path):
    """With the prefilter on, only passing rows are scored; a changed threshold recomputes the
    verdicts, never the pool model or the curvature, and scores only the rows that newly pass."""
    import pyarrow.parquet as pq

    from gdig_flows.flows.select import select_flow
    from gdig.config import load_config
    from gdig.store import Store

    on = ["prefilter.enabled=true", "prefilter.langid.enabled=false",  # no language ID for the invented pair
          "workspace.dir=ws/artifacts-prefilter", "workspace.db=ws/prefilter.duckdb"]
    state, states = run(select_flow, workspace, on)
    cfg = load_config(workspace, on)
    with Store(cfg.workspace.db) as store:
        verdicts = store.prefilter("pool", store.prefilter_signatures("pool")[0])
        passed = set(verdicts.loc[verdicts["passed"], "example_id"])
        assert 0 < len(passed) < 96
        assert set(influence_of(workspace, on)["example_id"]) == passed
    _, states = run(select_flow, workspace, on)
    assert set(states_by_stage(states)["prefilter"]) == {"Cached"}

    shards = Path(cfg.workspace.dir) / "scores" / "shards"
    before = {p.name for p in shards.glob("*.parquet")}
    looser = on + ["prefilter.copies.enabled=false", "prefilter.length.min_words=1"]
    _, states = run(select_flow, workspace, looser)
    by_stage = states_by_stage(states)
    assert by_stage["prefilter"] == ["Completed"]
    fixed = ("finetune-pool", "plan-curvature", "curvature-shard", "fit-curvature", "seed-products")
    assert {k: set(by_stage[k]) for k in fixed} == {k: {"Cached"} for k in fixed}
    new = {p.name for p in shards.glob("*.parquet")} - before
    rescored = sum(pq.read_metadata(shards / n).num_rows for n in new)
    with Store(cfg.workspace.db) as store:
        now = set(store.prefilter("pool", store.prefilter_signatures("pool")[0]).query("passed")["example_id"])
    assert now > passed and rescored == len(now - passed)  # at most the rows that newly pass
    assert set(influence_of(workspace, looser)["example_id"]) == now


def test_ekfac_curvature_mapped_in_two_passes_equals_the_one_process_fit(workspace, first_select, tmp_path):
    import torch

    from gdig_flows.flows.select import select_flow
    from gdig.config import load_config
    from gdig.influence.curvature import Curvature
    from curvature_walk import fit_curvature_here
    from gdig.store import Store

    ekfac = ["influence.curvature.strategy=ekfac"]
    state, states = run(select_flow, workspace, ekfac)
    by_stage = states_by_stage(states)
    assert by_stage["curvature-shard"] == ["Completed"] * 6  # factors, then eigenvalues, per shard
    assert by_stage["curvature-bases"] == ["Completed"] and by_stage["fit-curvature"] == ["Completed"]
    cid, ckpt, ref = state.result()["scoring"], state.result()["checkpoint"], state.result()["data"]["reference"]
    cfg = load_config(workspace, ekfac)
    with Store(cfg.workspace.db) as store:
        cid = store.get_scoring(cid["scoring_id"])["curvature_id"]
        mapped = Curvature.load(store.get_curvature(cid)["path"])
        one = load_config(workspace, ekfac + [f"workspace.dir={tmp_path}"])
        assert fit_curvature_here(one, store, ckpt["path"], ckpt["checkpoint_id"], progress=False,
                                   dataset=ref["name"], n_rows=ref["n_rows"]) == cid  # the reference pool
    local = Curvature.load(tmp_path / "curvature" / f"{cid}.safetensors")
    assert mapped.strategy == "ekfac" and (mapped.n_examples, mapped.n_tokens) == (local.n_examples, local.n_tokens)
    for name in local.module_names:
        for k in ("A", "G", "QA", "QG", "eigen"):
            assert torch.equal(getattr(mapped.factors[name], k), getattr(local.factors[name], k)), (name, k)


# -- scale -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("processes", [False, True], ids=["dask-threads", "dask-processes"])
def test_dask_task_runner_gives_the_local_scores(workspace, first_select, processes):
    """LocalCluster with 2 workers.  Threads: bit-identical to the local run.  Processes: Dask
    starts each worker with OMP_NUM_THREADS=1 (the local run used 2 torch threads), so float32
    sums are ordered differently: same helped fractions and selections, scores to 1e-4."""
    from gdig.influence.compute import read_score_matrix
    from gdig_flows.flows.select import select_flow

    result, _, local = first_select
    name = "processes" if processes else "threads"
    dask = ["orchestration.task_runner=dask", "orchestration.workers=2",
            f"orchestration.dask_processes={str(processes).lower()}",
            f"workspace.db=dask-{name}/gdig.duckdb", f"workspace.dir=dask-{name}/artifacts"]
    state, states = run(select_flow, workspace, dask)
    assert states_by_stage(states)["score-shard"] == ["Completed"] * 3
    remote = influence_of(workspace, dask)
    ids_local, seeds_local, m_local = read_score_matrix(_matrix(workspace, [], result["scoring"]["scoring_id"]))
    ids_dask, seeds_dask, m_dask = read_score_matrix(_matrix(workspace, dask, state.result()["scoring"]["scoring_id"]))
    assert ids_local == ids_dask and seeds_local == seeds_dask
    assert list(remote["example_id"]) == list(local["example_id"])
    np.testing.assert_array_equal(remote["helped_fraction"], local["helped_fraction"])
    picked = lambda r: [(s["strategy"], s["size"], s["path"].split("/")[-1]) for s in r["selections"]]  # noqa: E731
    assert picked(state.result()) == picked(result)
    if processes:
        np.testing.assert_allclose(m_dask, m_local, rtol=1e-4, atol=1e-9)
    else:
        np.testing.assert_array_equal(m_dask, m_local)
        pd.testing.assert_frame_equal(remote, local, check_exact=True)


def _matrix(config: Path, overrides: list[str], scoring_id: str) -> str:
    from gdig.config import load_config
    from gdig.store import Store

    with Store(load_config(config, overrides).workspace.db) as store:
        return store.get_scoring(scoring_id)["matrix_path"]


def test_devices_are_assigned_round_robin(workspace):
    from gdig.config import load_config
    from gdig_flows.tasks.runtime import device_for

    cfg = load_config(workspace, ["orchestration.devices=[cuda:0, cuda:1]"])
    assert [device_for(cfg, i) for i in range(5)] == ["cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda:0"]
    assert device_for(load_config(workspace), 3) is None


# -- command line ------------------------------------------------------------------------------------

def test_gdig_select_runs_the_flow_and_says_where(workspace, first_select):
    from typer.testing import CliRunner

    from gdig.cli import app

    res = CliRunner().invoke(app, ["select", str(workspace), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "pool 96 candidates x 6 seed groups" in res.output
    assert "prefect flow run: " in res.output and "/runs/flow-run/" in res.output
    assert "score-shard              3       3" in res.output  # stage timings: 3 runs, all cached


def test_gdig_select_reports_the_failed_stage(workspace, first_select, monkeypatch):
    from typer.testing import CliRunner

    import gdig.selection.quality as quality_mod
    from gdig.cli import app

    def broken(*args, **kwargs):
        raise RuntimeError("no seeds helped")

    monkeypatch.setattr(quality_mod, "rank_by_quality", broken)
    res = CliRunner().invoke(app, ["select", str(workspace), "--no-progress", "--set", "selection.gamma=0.35"])
    assert res.exit_code == 1
    assert "flow select Failed: quality: RuntimeError: no seeds helped" in res.output
    assert "prefect flow run: " in res.output


def test_gdig_package_does_not_import_prefect():
    import subprocess
    import sys

    code = ("import sys, gdig.cli, gdig.pipeline, gdig.store, gdig.train, gdig.evaluate, gdig.report; "
            "print(sorted(m for m in sys.modules if m == 'prefect' or m.startswith('prefect.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- deployments -----------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def test_prefect_yaml_deployments_load_and_schedules_parse():
    from prefect.cli.deploy._models import PrefectYamlModel
    from prefect.cli.deploy._schedules import _schedule_config_to_deployment_schedule
    from prefect.flows import load_flow_from_entrypoint

    raw = yaml.safe_load((ROOT / "gdig_flows" / "deployments" / "prefect.yaml").read_text(encoding="utf-8"))
    model = PrefectYamlModel.model_validate(raw)
    assert [d.name for d in model.deployments] == ["nightly-select", "weekly-run"]
    for dep, dep_raw in zip(model.deployments, raw["deployments"]):
        path, func = dep.entrypoint.split(":")
        flow = load_flow_from_entrypoint(f"{ROOT / path}:{func}")
        assert flow.name in ("gdig-select", "gdig-run")
        assert set(dep.parameters) == set(flow.parameters.properties) == {"config", "overrides"}
        assert dep.work_pool.name == "gdig-local"
        for sched in dep_raw["schedules"]:
            built = _schedule_config_to_deployment_schedule(sched)["schedule"]
            assert built.cron == sched["cron"] and str(built.timezone) == "UTC"
    nightly = raw["deployments"][0]["schedules"][0]
    assert nightly["active"] is True
    assert next_run(nightly) == datetime(2026, 1, 2, 2, 0, tzinfo=timezone.utc)  # from Thu 2026-01-01 12:00
    weekly = raw["deployments"][1]["schedules"][0]
    assert weekly["active"] is False
    assert next_run(weekly) == datetime(2026, 1, 4, 4, 0, tzinfo=timezone.utc)  # the next Sunday


def test_deployments_are_defined_once():
    """prefect.yaml is generated from gdig_flows/deployments/definitions.py, and serve.py builds the same
    deployments (served names), so the two paths cannot disagree."""
    from gdig_flows.deployments.definitions import DEPLOYMENTS, SERVED_SUFFIX, prefect_yaml
    from gdig_flows.deployments.serve import build_deployments

    assert (ROOT / "gdig_flows" / "deployments" / "prefect.yaml").read_text(encoding="utf-8") == prefect_yaml(), (
        "gdig_flows/deployments/prefect.yaml is stale: python -m gdig_flows.deployments.definitions > gdig_flows/deployments/prefect.yaml")
    raw = yaml.safe_load(prefect_yaml())["deployments"]
    served = build_deployments("gdig.yaml")
    assert [d["name"] for d in raw] == [d.name for d in DEPLOYMENTS] == [s.name.removesuffix(SERVED_SUFFIX)
                                                                         for s in served]
    for d, s in zip(raw, served):
        assert (d["description"], d["tags"]) == (s.description, s.tags)
        assert [(x["cron"], x["active"]) for x in d["schedules"]] == [(x.schedule.cron, x.active) for x in s.schedules]
        assert d["parameters"]["overrides"] == s.parameters["overrides"] == []  # the config as it is, both ways


def next_run(sched: dict):
    """The first date the Prefect scheduler service would create a run for, after 2026-01-01 12:00 UTC."""
    import asyncio

    from prefect.server.schemas.schedules import CronSchedule

    cron = CronSchedule(cron=sched["cron"], timezone=sched["timezone"])
    (first,) = asyncio.run(cron.get_dates(n=1, start=datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)))
    return first


def test_serve_builds_deployments_without_serving(workspace):
    from gdig_flows.deployments.serve import build_deployments

    deps = build_deployments(str(workspace), ["selection.budgets=[8]"], nightly="30 1 * * *")
    assert [(d.name, d.flow_name) for d in deps] == [("nightly-select-served", "gdig-select"), ("weekly-run-served", "gdig-run")]
    for d in deps:
        assert d.parameters == {"config": str(workspace.resolve()), "overrides": ["selection.budgets=[8]"]}
    assert [(s.schedule.cron, s.active) for d in deps for s in d.schedules] == [("30 1 * * *", True), ("0 4 * * SUN", False)]


# -- operating in the UI: names, run logs, artifacts, deploy ---------------------------------------

def _flow_run_ids(flow_run_id) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    with get_client(sync_client=True) as client:
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id])))
    return [flow_run_id] + [c.id for c in children]


def test_runs_tasks_and_artifacts_name_workspace_strategy_and_budget(workspace, first_select):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from gdig_flows.flows.cli import task_runs
    from gdig_flows.flows.run import run_flow

    named = ["workspace.name=Night Shift_7"]  # a label that must be slugged for artifact keys
    state, _ = run(run_flow, workspace, named)
    ids = _flow_run_ids(state.state_details.flow_run_id)
    with get_client(sync_client=True) as client:
        names = {client.read_flow_run(i).name for i in ids}
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=ids)))
    assert names == {"run ws=Night Shift_7 budgets=16", "select ws=Night Shift_7 budgets=16"}
    tasks = {tr.name for tr in task_runs(state.state_details.flow_run_id)}
    for expected in ("cluster-resample gdig@16", "cluster-resample random@16", "export gdig@16",
                     "finetune-selection gdig@16", "finetune-selection random@16", "translate eval by gdig@16",
                     "translate eval by base", "metrics eval by random@16", "score-shard [0, 32)",
                     "score-shard [64, 96)", "curvature-shard factors [32, 64)", "fit-curvature kfac",
                     "quality gamma=0.5", "ingest ws=Night Shift_7"):
        assert expected in tasks, (expected, sorted(tasks))
    keys = {a.key for a in artifacts if a.key}
    assert {"gdig-night-shift-7-selection", "gdig-night-shift-7-exports", "gdig-night-shift-7-comparison",
            "gdig-night-shift-7-report", "gdig-night-shift-7-score-shards"} <= keys, keys
    assert all(k.startswith("gdig-night-shift-7-") for k in keys), keys
    assert not any("file://" in str(a.data) for a in artifacts)
    selection = next(a for a in artifacts if a.key == "gdig-night-shift-7-selection")
    for column in ("clean %", "rm-prec", "removed misaligned", "export"):  # the columns `gdig select` prints
        assert f"| {column} |" in selection.data or f" {column} |" in selection.data, selection.data
    report = state.result()["report"]
    run_dir = Path(report["paths"]["html"]).parent
    assert run_dir.parent.name == "reports" and run_dir.name == report["run_id"]
    assert (run_dir.parent / "latest" / "report.html").is_file()
    top = Path(report["paths"]["markdown"]).read_text().split("## Data and runs")[0]
    assert "gdig run " in top and str(workspace.resolve()) in top and "Night Shift_7" in top


def test_a_running_stage_logs_its_progress_to_the_run_log(workspace, first_select, monkeypatch):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (ArtifactFilter, ArtifactFilterTaskRunId, LogFilter,
                                                LogFilterTaskRunId)
    from prefect.client.schemas.sorting import LogSort
    from prefect.logging.handlers import APILogHandler

    from gdig_flows.flows.cli import task_runs
    from gdig_flows.flows.run import run_flow

    monkeypatch.setenv("GDIG_PROGRESS_INTERVAL", "0")  # a line per step: the tiny runs take < 1 s
    state, _ = run(run_flow, workspace, ["finetune.seed=3"])  # new finetuning: the stage really runs
    APILogHandler().flush()  # the batched log writer: every record of the run is on the server
    runs = [tr for tr in task_runs(state.state_details.flow_run_id) if tr.name == "finetune-selection gdig@16"]
    assert len(runs) == 1 and runs[0].state.name == "Completed"
    tr = runs[0]
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(task_run_id=LogFilterTaskRunId(any_=[tr.id])),
                                sort=LogSort.TIMESTAMP_ASC)
        progress = client.read_artifacts(
            artifact_filter=ArtifactFilter(task_run_id=ArtifactFilterTaskRunId(any_=[tr.id])))
    lines = [log for log in logs if log.message.startswith("finetune gdig@16: ")]
    messages = [log.message for log in lines]
    assert messages[0] == "finetune gdig@16: 0/2 step (0%)", messages
    mid = [log for log in lines if log.message.startswith("finetune gdig@16: 1/2 step (50%), ")]
    assert mid and " step/s, ETA " in mid[0].message and "loss " in mid[0].message
    assert mid[0].timestamp < tr.end_time  # written while the stage ran
    assert "done in" in messages[-1] and messages[-1].startswith("finetune gdig@16: 2/2 step (100%)")
    assert [(a.type, a.data) for a in progress] == [("progress", 100.0)]


def test_prefect_deploy_of_each_deployment_exits_0(first_select):
    """`prefect deploy --name ...` in a subprocess against the session's test server (a real
    uvicorn server on a local port), then the deployment read back through the client."""
    import os
    import subprocess
    import sys

    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    prefect = str(Path(sys.executable).parent / "prefect")
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONPATH": str(ROOT),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_CLI_PROMPT": "false"}
    pool = subprocess.run([prefect, "work-pool", "create", "gdig-local", "--type", "process", "--overwrite"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert pool.returncode == 0, pool.stdout + pool.stderr
    raw = yaml.safe_load((ROOT / "gdig_flows" / "deployments" / "prefect.yaml").read_text(encoding="utf-8"))
    for dep in raw["deployments"]:
        out = subprocess.run([prefect, "--no-prompt", "deploy", "--prefect-file", "gdig_flows/deployments/prefect.yaml",
                              "--name", dep["name"]], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "Traceback" not in out.stdout + out.stderr and "successfully created" in out.stdout
    with get_client(sync_client=True) as client:
        nightly = client.read_deployment_by_name("gdig-select/nightly-select")
        weekly = client.read_deployment_by_name("gdig-run/weekly-run")
    assert nightly.work_pool_name == weekly.work_pool_name == "gdig-local"
    assert [(s.schedule.cron, s.active) for s in nightly.schedules] == [("0 2 * * *", True)]
    for dep in (nightly, weekly):  # the run form: every parameter explained, with examples
        props = dep.parameter_openapi_schema["properties"]
        assert set(props) == {"config", "overrides"}
        assert "workspace YAML config" in props["config"]["description"] and props["config"]["examples"]
        assert "KEY=VALUE" in props["overrides"]["description"] and props["overrides"]["examples"]


def test_source_gain_rule_adds_one_stage_and_rescores_nothing(workspace, first_select):
    """The rule on: the source-free-loss task runs once and is cached after; the scoring is
    reused, and only the selections that read the rule are made again."""
    from gdig_flows.flows.select import select_flow
    from gdig.config import load_config
    from gdig.store import Store

    on = ["selection.source_gain_min=0.0"]
    _, states = run(select_flow, workspace, on)
    by_stage = states_by_stage(states)
    assert set(by_stage) == SELECT_STAGES | {"source-free-loss"} and by_stage["source-free-loss"] == ["Completed"]
    fixed = ("finetune-pool", "fit-curvature", "seed-products", "score-shard", "merge-scores")
    assert {k: set(by_stage[k]) for k in fixed} == {k: {"Cached"} for k in fixed}
    assert by_stage["cluster-resample"] == ["Cached", "Completed"]  # random reads no quality rule
    with Store(load_config(workspace, on).workspace.db) as store:
        assert store.count("source_free_loss") == 96
    _, states = run(select_flow, workspace, on)
    assert set(states_by_stage(states)["source-free-loss"]) == {"Cached"}
