"""The two executors of the stage graph give the same results, bit for bit: `gdig run` with
`--no-prefect` (gdig.pipeline) and as the Prefect flow, on the same tiny workspace (test_flows'
data and model, the prefilter on), then `select` again with appended candidates, which both
score against the reference pool's checkpoint, curvature and seed products."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_flows import build_workspace

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_harness")]

SETTINGS = ["prefilter.enabled=true", "prefilter.langid.enabled=false",  # no language ID for the invented pair
            "influence.curvature.strategy=ekfac"]  # the two-pass curvature: every mapped stage runs
MORE = ["data.candidates=[{path: data/pool.jsonl}, {path: data/new_candidates.jsonl}]"]


def overrides(name: str, *extra: list[str]) -> list[str]:
    return SETTINGS + [f"workspace.db={name}/gdig.duckdb", f"workspace.dir={name}/artifacts"] + sum(extra, [])


def outcome(config: Path, over: list[str]) -> dict:
    """Everything a run leaves that the executor must not change: ids, scores, selections,
    exports, metrics, the reference pool."""
    from gdig.config import load_config
    from gdig.influence.compute import read_score_matrix
    from gdig.store import Store

    cfg = load_config(config, over)
    with Store(cfg.workspace.db) as store:
        scoring = store.table("scorings").sort_values("created_at").iloc[-1]
        sels = store.selections()["selection_id"].drop_duplicates().sort_values()
        metrics = store.metrics()
        return {
            "scoring_id": scoring["scoring_id"], "curvature_id": scoring["curvature_id"],
            "checkpoints": sorted(store.table("checkpoints")["checkpoint_id"]),
            "influence": store.influence(scoring["scoring_id"]),
            "matrix": read_score_matrix(scoring["matrix_path"]),
            "selections": {s: store.selection(s)[["example_id", "rank", "reason", "cluster"]] for s in sels},
            "exports": {p.name: p.read_bytes() for p in (Path(cfg.workspace.dir) / "selections").glob("*.jsonl")},
            "metrics": metrics[["strategy", "budget", "eval_set", "metric", "value", "signature"]]
            .sort_values(["strategy", "budget", "eval_set", "metric"], na_position="first").reset_index(drop=True),
            "reference": store.info("orchestration.reference_pool"),
        }


def assert_same(a: dict, b: dict) -> None:
    for key in ("scoring_id", "curvature_id", "checkpoints", "reference"):
        assert a[key] == b[key], key
    pd.testing.assert_frame_equal(a["influence"], b["influence"], check_exact=True)
    assert a["matrix"][:2] == b["matrix"][:2]
    np.testing.assert_array_equal(a["matrix"][2], b["matrix"][2])
    assert a["selections"].keys() == b["selections"].keys()
    for sid in a["selections"]:
        pd.testing.assert_frame_equal(a["selections"][sid], b["selections"][sid], check_exact=True)
    assert a["exports"] == b["exports"]
    pd.testing.assert_frame_equal(a["metrics"], b["metrics"], check_exact=True)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return build_workspace(tmp_path_factory.mktemp("executors"))


def test_run_then_appended_select_are_the_same_under_both_executors(workspace):
    from gdig_flows.flows.run import run_flow
    from gdig_flows.flows.select import select_flow
    from gdig.config import load_config
    from gdig.pipeline import run_pipeline, select_pipeline

    plain = run_pipeline(load_config(workspace, overrides("plain")), progress=False)
    state = run_flow(str(workspace), overrides("flow"), return_state=True)
    assert state.is_completed(), state.message
    first = outcome(workspace, overrides("plain"))
    assert_same(first, outcome(workspace, overrides("flow")))
    assert len(first["metrics"]) and len(plain.jobs) == 2 and plain.base_metrics
    assert 0 < len(first["influence"]) < 96  # the prefilter decided what was scored
    from gdig.pipeline import render_run  # one rendering of a run's result, either executor

    flow_text = render_run(state.result())
    same_dirs = plain.render().replace("/plain/", "/flow/")
    assert same_dirs.split("\nwall time: ")[0] == flow_text.split("\nhtml: ")[0]
    assert f"html: {plain.paths['html']}" in plain.render() and "html: " in flow_text

    select_pipeline(load_config(workspace, overrides("plain", MORE)), progress=False)
    state = select_flow(str(workspace), overrides("flow", MORE), return_state=True)
    assert state.is_completed(), state.message
    appended = outcome(workspace, overrides("plain", MORE))
    assert_same(appended, outcome(workspace, overrides("flow", MORE)))
    # the reference pool: appended candidates are scored against the same model and curvature
    assert appended["curvature_id"] == first["curvature_id"] and appended["checkpoints"] == first["checkpoints"]
    assert appended["influence"]["position"].max() >= 96 and appended["scoring_id"] != first["scoring_id"]
