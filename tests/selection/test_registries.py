"""Every vocabulary is one table: the config's choices come from it, and a new entry (a D_hq rule,
a quality score, an allocation, an input format) is all it takes for the code to use it."""

from __future__ import annotations

import typing

import numpy as np
import pandas as pd
import pytest

from gdig.config import DataSource, SelectionConfig
from gdig.selection import allocation, diversity, quality, rules, summary
from gdig.selection.select import SELECTION_STRATEGIES, SelectSettings
from paper_selection import select


def _choices(model, name: str) -> tuple:
    ann = model.model_fields[name].annotation
    if typing.get_origin(ann) is list:
        ann = typing.get_args(ann)[0]
    return typing.get_args(ann)


def test_the_config_offers_exactly_the_registered_names():
    from gdig.data.readers.formats import FORMATS, READERS

    assert _choices(SelectionConfig, "strategies") == tuple(SELECTION_STRATEGIES)
    assert _choices(SelectionConfig, "quality") == tuple(quality.QUALITY_SCORES)
    assert _choices(SelectionConfig, "allocation") == tuple(allocation.ALLOCATION_REGISTRY)
    assert _choices(SelectionConfig, "within_cluster") == diversity.WITHIN_CLUSTER
    assert _choices(DataSource, "format") == FORMATS == ("auto", *READERS)
    for key in rules.HQ_RULES:  # every D_hq rule has its config key
        assert key in SelectionConfig.model_fields
    assert set(SelectSettings.from_config(SelectionConfig()).rules) == set(rules.HQ_RULES)


def test_every_d_hq_rule_has_its_words_and_its_stage():
    """The texts and the stage a D_hq rule needs live with their readers, keyed by the rule."""
    from gdig import graph
    from gdig_flows.tasks.artifacts import ARTIFACT_CLAUSES

    assert set(summary.SUMMARY_CLAUSES) == set(ARTIFACT_CLAUSES) == set(rules.HQ_RULES)
    assert {r.reads for r in rules.HQ_RULES.values() if r.reads} <= set(graph.COLUMN_STAGES)
    assert set(graph.COLUMN_STAGES.values()) <= set(graph.BY_NAME)
    assert graph.needed_stages({"closing_loss_max": 8.0, "source_gain_min": None}) == set()
    assert graph.needed_stages({"closing_loss_max": None, "source_gain_min": 0.1}) == {"source-free-loss"}
    counts = {"n_closing_rejected": 3, "n_gain_rejected": 2}
    assert rules.clauses(ARTIFACT_CLAUSES, {"closing_loss_max": 8.0, "source_gain_min": 0.5}, counts) == [
        "3 ranked last by the closing-token rule (closing loss > 8 nats)",
        "2 ranked last by the source-gain rule (gain < 0.5 nats per target token)"]


def _pool(n: int = 8) -> pd.DataFrame:
    return pd.DataFrame({"example_id": [f"e{i}" for i in range(n)], "position": np.arange(n),
                         "helped_fraction": np.ones(n), "mean": -np.arange(n, dtype=float),
                         "loss": np.linspace(0.5, 4.0, n)})


def test_a_new_d_hq_rule_is_one_entry(monkeypatch):
    """A third rule (a cap on the candidate's own loss) added as one entry: γ, the ranking, the
    count, the warning and the summary's clause follow from it."""
    rule = rules.HqRule("loss_max", "loss_ok", "n_loss_rejected", lambda df, t: df["loss"].to_numpy() <= t,
                        in_id_when_off=False, too_many="the loss rule ranks {n} of {total} candidates last")
    monkeypatch.setitem(rules.HQ_RULES, "loss_max", rule)
    monkeypatch.setitem(summary.SUMMARY_CLAUSES, "loss_max", "{n} candidates with a loss above {t:g} ranked last")
    pool = _pool()
    sel = select("quality", 4, pool, None, {"gamma": 1.0, "quality": "influence", "loss_max": 1.5})
    failing = set(pool.loc[pool["loss"] > 1.5, "example_id"])
    assert sel.n_loss_rejected == len(failing) == 5 and sel.n_high_quality == 3
    assert list(sel.rows["example_id"][3:]) == ["e7"]  # the best of the rejects fills, after all of D_hq
    assert set(sel.rows["example_id"][:3]) == {"e0", "e1", "e2"}
    assert any("the loss rule ranks 5 of 8 candidates last" in w for w in sel.warnings)
    assert rules.clauses(summary.SUMMARY_CLAUSES, {"loss_max": 1.5}, sel.rejected) == [
        "5 candidates with a loss above 1.5 ranked last"]
    off = select("quality", 4, pool, None, {"gamma": 1.0, "quality": "influence"})
    assert off.n_loss_rejected is None and off.n_high_quality == 8
    with pytest.raises(ValueError, match=r"unknown D_hq rule\(s\) \['nope'\]"):
        rules.passes_rules(pool, {"nope": 1.0})


def test_a_new_quality_score_is_one_entry(monkeypatch):
    monkeypatch.setitem(quality.QUALITY_SCORES, "short",
                        quality.QualityScore("short", lambda df: -df["loss"].to_numpy(), ("loss",)))
    ranked = quality.rank_by_quality(_pool().iloc[::-1], 1.0, "short")
    assert list(ranked["example_id"]) == [f"e{i}" for i in range(8)]
    with pytest.raises(ValueError, match="quality score 'short' needs \\['loss'\\]"):
        quality.quality_score(_pool().drop(columns=["loss"]), "short")


def test_a_new_allocation_is_one_entry(monkeypatch):
    first = allocation.Allocation("first", lambda c, budget: np.eye(len(c.sizes), dtype=np.int64)[0] * budget,
                                  reads_quality=False)
    monkeypatch.setitem(allocation.ALLOCATION_REGISTRY, "first", first)
    labels = np.array([0, 1, 0, 1, 0])
    assert allocation.cluster_quotas(labels, 2, "first").tolist() == [2, 0]
    assert allocation.allocate(labels, 2, allocation="first", within="quality").tolist() == [0, 2]
    with pytest.raises(ValueError, match="unknown allocation 'nope'; one of even, size"):
        allocation.cluster_quotas(labels, 2, "nope")


def test_a_new_input_format_is_one_entry(monkeypatch, tmp_path):
    from gdig.data.readers import formats, open_source, read_rows
    from gdig.data.readers.common import Row

    def read_psv(source, direction):
        for n, line in enumerate(source.files[0].read_text(encoding="utf-8").splitlines(), start=1):
            src, tgt = line.split("|")
            yield Row(str(source.files[0]), n, src, tgt, *(direction or (None, None)), None, line)

    monkeypatch.setitem(formats.READERS, "psv", formats.Format("psv", read_psv, (".psv",)))
    path = tmp_path / "pairs.psv"
    path.write_text("Hallo|Hello\nJa|Yes\n", encoding="utf-8")
    source = open_source(path)
    assert source.fmt == "psv"
    assert [(r.src, r.tgt, r.src_lang) for r in read_rows(source, "de", "en")] == [("Hallo", "Hello", "de"),
                                                                                   ("Ja", "Yes", "de")]
