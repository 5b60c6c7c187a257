"""Prefilter verdicts in the store: round trip, replacement, counts, migration from schema 1."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from gdig.data.ingest import example_id
from gdig.store import SCHEMA_VERSION, Store, StoreError

PAIRS = [("Dobrý den.", "Good morning."), ("Ahoj", "Ahoj"), ("Kočka spí na gauči.", "Привет")]


def _pool(store: Store) -> list[str]:
    df = pd.DataFrame(PAIRS, columns=["src", "tgt"])
    df["src_lang"], df["tgt_lang"] = "cs", "en"
    df["example_id"] = [example_id("cs", "en", s, t) for s, t in PAIRS]
    df["source_file"], df["source_row"] = "f.jsonl", range(1, len(df) + 1)
    df["label"] = ["clean", "untranslated", "wrong_language"]
    store.add_rows(dataset="pool", role="candidates", src_lang="cs", tgt_lang="en", rows=df)
    return df["example_id"].tolist()


def _decisions(ids: list[str]) -> pd.DataFrame:
    return pd.DataFrame({
        "example_id": ids, "passed": [True, False, False], "rule": [None, "copies", "script.tgt"],
        "figure": [math.nan, 1.0, 0.0], "copies": [0.2, 1.0, 0.1], "script.tgt": [1.0, 1.0, 0.0],
        "langid.tgt": [0.99, math.nan, 0.0],
    })


def test_verdicts_round_trip_in_dataset_order(tmp_path):
    with Store(tmp_path / "s.duckdb") as s:
        ids = _pool(s)
        s.add_prefilter("pool", "sig1", _decisions(ids)[::-1].reset_index(drop=True))
        got = s.prefilter("pool", "sig1")
    assert got["example_id"].tolist() == ids
    assert got["passed"].tolist() == [True, False, False]
    assert got["rule"].tolist()[1:] == ["copies", "script.tgt"] and got["rule"].isna().tolist()[0]
    assert got["label"].tolist() == ["clean", "untranslated", "wrong_language"]
    assert got["figures"][0] == {"copies": 0.2, "script.tgt": 1.0, "langid.tgt": 0.99}
    assert "langid.tgt" not in got["figures"][1]  # NaN = not judged, left out


def test_counts_signatures_and_replacement(tmp_path):
    with Store(tmp_path / "s.duckdb") as s:
        ids = _pool(s)
        s.add_prefilter("pool", "old", _decisions(ids))
        s.add_prefilter("pool", "new", _decisions(ids).assign(passed=True, rule=None))
        s.add_prefilter("pool", "old", _decisions(ids))  # a re-load replaces, never doubles
        assert s.count("prefilter") == 6
        assert set(s.prefilter_signatures("pool")) == {"old", "new"}
        counts = s.prefilter_counts("pool", "old")
        assert dict(zip(counts["rule"], counts["n"])) == {"copies": 1, "script.tgt": 1}
        assert len(s.prefilter_counts("pool", "new")) == 0


def test_unknown_dataset_or_example_is_an_error_and_writes_nothing(tmp_path):
    with Store(tmp_path / "s.duckdb") as s:
        ids = _pool(s)
        with pytest.raises(StoreError, match="no dataset named 'eval'"):
            s.add_prefilter("eval", "sig", _decisions(ids))
        bad = _decisions(ids[:2] + ["not-an-id"])
        with pytest.raises(StoreError, match="1 example\\(s\\) that are not in dataset 'pool'"):
            s.add_prefilter("pool", "sig", bad)
        assert s.count("prefilter") == 0


def test_a_schema_1_store_gains_the_prefilter_table(tmp_path):
    path = tmp_path / "s.duckdb"
    with Store(path) as s:
        _pool(s)
        s.con.execute("DROP TABLE prefilter")  # what a store written by schema 1 looks like
        s.con.execute("UPDATE schema_info SET value = '1' WHERE key = 'version'")
    with Store(path) as s:
        assert s.info("version") == str(SCHEMA_VERSION) == "4"
        assert s.count("prefilter") == 0 and s.count("examples") == 3  # data kept
