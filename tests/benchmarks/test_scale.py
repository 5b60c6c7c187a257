"""benchmarks/scale.py at two tiny pool sizes, so the scale benchmark cannot rot."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "scale.py"


def _scale():
    spec = importlib.util.spec_from_file_location("scale_benchmark", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_slope_is_the_log_log_exponent():
    scale = _scale()
    assert scale.slope([10, 100, 1000], [3, 300, 30000]) == pytest.approx(2.0)
    assert scale.slope([1000, 4000], [5.0, 5.0]) == pytest.approx(0.0)
    assert scale.slope([1000], [5.0]) is None


def test_scale_runs_select_at_two_sizes(tmp_path, capsys):
    scale = _scale()
    out = tmp_path / "runs.json"
    rc = scale.main(["--sizes", "200,400", "--out", str(tmp_path / "work"), "--json", str(out),
                     "--demo", "pretrain_steps=0", "--demo", "n_general=100", "--demo", "n_seed=10",
                     "--demo", "n_eval=10", "--demo", "vocab_size=300",
                     "--set", "selection.budgets=[20]", "--set", "influence.curvature.sample=60"])
    assert rc == 0
    runs = json.loads(out.read_text())
    assert [r["n_pool"] for r in runs] == [200, 400]
    for r in runs:
        # every stage of `gdig select` ran, in the graph's order
        assert list(r["stages_s"])[:3] == ["ingest", "prefilter", "finetune-pool"]
        assert {"score-shard", "merge-scores", "cluster-resample", "export", "summarize-selection"} <= set(r["stages_s"])
        assert 0 < r["n_scored"] <= r["n_pool"]
        assert r["select_rss_mb"] >= max(r["stage_peak_mb"].values()) > 0
        assert set(r["stage_peak_mb"]) == set(r["stages_s"])
        assert r["store_mb"] > 0 and r["artifact_folders_mb"]["scores"] > 0
    assert runs[1]["n_scored"] > runs[0]["n_scored"]
    text = capsys.readouterr().out
    assert "| select total |" in text and "| peak RSS |" in text and "exp 200→400" in text
