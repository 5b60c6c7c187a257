"""The DuckDB store: schema versioning, dataset rows, duplicates, transactions, errors."""

from __future__ import annotations

import pandas as pd
import pytest

from gdig.data.ingest import example_id
from gdig.store import SCHEMA_VERSION, TABLES, Store, StoreError


def rows(pairs, file="f.jsonl", labels=None):
    df = pd.DataFrame(pairs, columns=["src", "tgt"])
    df["src_lang"], df["tgt_lang"] = "de", "en"
    df["example_id"] = [example_id("de", "en", s, t) for s, t in pairs]
    df["source_file"] = file
    df["source_row"] = range(1, len(df) + 1)
    if labels is not None:
        df["label"] = labels
    return df


def add(store, pairs, name="pool", role="candidates", **kw):
    return store.add_rows(dataset=name, role=role, src_lang="de", tgt_lang="en", rows=rows(pairs, **kw))


def test_fresh_store_has_every_table_and_the_version(tmp_path):
    with Store(tmp_path / "s.duckdb") as s:
        for t in TABLES:
            assert s.count(t) == 0
    with Store(tmp_path / "s.duckdb") as s:  # reopening keeps it
        assert s.count("examples") == 0


def test_newer_schema_is_a_clear_error(tmp_path):
    path = tmp_path / "s.duckdb"
    with Store(path) as s:
        # simulate a DB written by a future gdig (tests may poke the DB directly)
        s.con.execute("UPDATE schema_info SET value = ? WHERE key = 'version'", [str(SCHEMA_VERSION + 1)])
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1} is newer than this gdig supports "
                                         f"\\({SCHEMA_VERSION}\\); upgrade gdig"):
        Store(path)


def test_read_only_on_a_missing_store(tmp_path):
    with pytest.raises(StoreError, match="no gdig store here"):
        Store(tmp_path / "none.duckdb", read_only=True)


def test_add_rows_counts_duplicates_and_keeps_order(store):
    r = add(store, [("a", "x"), ("b", "y"), ("a", "x")], labels=["clean", "misaligned", "clean"])
    assert r == {"added": 2, "duplicates": 1, "rejected": 0}
    r = add(store, [("c", "z"), ("b", "y")], file="g.jsonl")
    assert r == {"added": 1, "duplicates": 1, "rejected": 0}
    df = store.dataset_examples("pool")
    labels = [None if pd.isna(x) else x for x in df["label"]]  # NULL label: unknown
    assert list(zip(df["src"], df["position"], df["source_file"], labels)) == [
        ("a", 0, "f.jsonl", "clean"), ("b", 1, "f.jsonl", "misaligned"), ("c", 2, "g.jsonl", None)]
    ds = store.get_dataset("pool")
    assert (ds["n_rows"], ds["n_duplicates"], ds["role"]) == (3, 2, "candidates")
    # the same example in another dataset is stored once in `examples`
    add(store, [("a", "x")], name="seed", role="seed")
    assert store.count("examples") == 3 and store.count("dataset_examples") == 4
    ids = [example_id("de", "en", "c", "z"), example_id("de", "en", "a", "x")]
    assert list(store.examples_by_id(ids)["src"]) == ["c", "a"]


def test_add_rows_refuses_another_pair_or_role(store):
    add(store, [("a", "x")])
    with pytest.raises(StoreError, match="exists as role=candidates de-en"):
        store.add_rows(dataset="pool", role="seed", src_lang="de", tgt_lang="en", rows=rows([("b", "y")]))


def test_rejects_and_ingested_files(store):
    rej = pd.DataFrame({"source_file": ["f.jsonl"], "source_row": [4], "reason": ["empty target"], "raw": ['{"src": "a"}']})
    r = store.add_rows(dataset="pool", role="candidates", src_lang="de", tgt_lang="en", rows=rows([("a", "x")]),
                       rejects=rej, files=[("f.jsonl", "h1", 2)])
    assert r["rejected"] == 1
    got = store.rejects("pool")
    assert list(got[["source_file", "source_row", "reason", "raw"]].itertuples(index=False, name=None)) == [
        ("f.jsonl", 4, "empty target", '{"src": "a"}')]
    assert store.file_ingested("pool", "h1") and not store.file_ingested("seed", "h1")


def test_transaction_rolls_back_everything(store):
    add(store, [("a", "x")])
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.start_run("ingest")  # writes inside the transaction
            store.add_checkpoint("c1", "pool", "/tmp/c1")
            raise RuntimeError("boom")
    assert store.count("examples") == 1 and store.count("runs") == 0 and store.count("checkpoints") == 0


def test_errors_name_what_is_missing(store):
    with pytest.raises(StoreError, match="no dataset named 'nope'"):
        store.dataset_examples("nope")
    with pytest.raises(StoreError, match="unknown table"):
        store.table("secrets")
    run = store.start_run("ingest", {"a": 1}, "h")
    store.finish_run(run, "failed", "bad row")
    assert store.table("runs")[["status", "message"]].values.tolist() == [["failed", "bad row"]]
