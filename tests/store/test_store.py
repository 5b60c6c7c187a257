"""The DuckDB store, domain by domain: schema versioning and identity, dataset rows, duplicates and
replacement, transactions, errors, influence, selections, checkpoints, translations, metrics."""

from __future__ import annotations

import json

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


# -- schema: identity ------------------------------------------------------------------------
def test_store_id_is_made_once_and_kept(tmp_path):
    with Store(tmp_path / "s.duckdb") as s:
        sid = s.store_id()
        assert len(sid) == 32 and s.store_id() == sid and s.info("store_id") == sid
        s.set_info("note", "x")
        with pytest.raises(StoreError, match="'version' is managed by the store"):
            s.set_info("version", "9")
    with Store(tmp_path / "s.duckdb", read_only=True) as s:
        assert (s.store_id(), s.info("note"), s.info("nope")) == (sid, "x", None)
    with Store(tmp_path / "t.duckdb") as s:  # a fresh DB is another store
        assert s.store_id() != sid


# -- datasets: duplicates already stored, replace ------------------------------------------
def test_add_rows_counts_rows_already_stored_and_repeated_in_one_batch(store):
    add(store, [("a", "x")])
    r = add(store, [("a", "x"), ("b", "y"), ("a", "x"), ("b", "y")], file="g.jsonl")
    assert r == {"added": 1, "duplicates": 3, "rejected": 0}
    df = store.dataset_examples("pool")
    assert list(zip(df["src"], df["position"], df["source_row"])) == [("a", 0, 1), ("b", 1, 2)]
    assert store.dataset_ids("pool") == [example_id("de", "en", s, t) for s, t in [("a", "x"), ("b", "y")]]
    assert store.get_dataset("pool")["n_duplicates"] == 3


def test_add_rows_replace_drops_the_old_rows_rejects_and_files(store):
    rej = pd.DataFrame({"source_file": ["f.jsonl"], "source_row": [9], "reason": ["empty source"], "raw": ["{}"]})
    store.add_rows(dataset="pool", role="candidates", src_lang="de", tgt_lang="en",
                   rows=rows([("a", "x"), ("b", "y")]), rejects=rej, files=[("f.jsonl", "h1", 3)])
    r = store.add_rows(dataset="pool", role="candidates", src_lang="de", tgt_lang="en",
                       rows=rows([("b", "y"), ("c", "z")], file="g.jsonl"), files=[("g.jsonl", "h2", 2)], replace=True)
    assert r == {"added": 2, "duplicates": 0, "rejected": 0}
    df = store.dataset_examples("pool")
    assert list(zip(df["src"], df["position"], df["source_file"])) == [("b", 0, "g.jsonl"), ("c", 1, "g.jsonl")]
    ds = store.get_dataset("pool")
    assert (ds["n_rows"], ds["n_duplicates"], ds["n_rejected"]) == (2, 0, 0)
    assert len(store.rejects("pool")) == 0 and store.ingested_hashes("pool") == ["h2"]
    assert store.count("examples") == 3  # examples stay: another dataset may share them


# -- influence ---------------------------------------------------------------------------------
def _scored(store, grad_norm=True):
    add(store, [("a", "x"), ("b", "y"), ("c", "z")], labels=["clean", "shuffled", None])
    ids = store.dataset_ids("pool")
    store.add_curvature("cv", checkpoint_id="ck", strategy="kfac", granularity="sequence",
                        modules=["m.0", "m.1"], n_examples=3, n_tokens=12, path="/f", meta={"damping": 0.1})
    agg = pd.DataFrame({"example_id": ids, "position": [0, 1, 2], "loss": [1.0, 2.0, 3.0],
                        "helped_fraction": [0.5, 0.0, 1.0], "mean": [-1.0, 1.0, -2.0],
                        "min": [-3.0, 0.0, -4.0], "max": [1.0, 2.0, 0.0]})
    if grad_norm:
        agg["grad_norm"] = [0.1, 0.2, 0.3]
    sk = pd.DataFrame({"example_id": ids, "sketch": [[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]})
    store.add_scoring("sc", curvature_id="cv", seed_dataset="seed", candidate_dataset="pool",
                      aggregates=agg, sketches=sk, matrix_path="/m.parquet", n_seeds=4, meta={"k": 1})
    return ids


def test_curvature_scoring_influence_and_sketches(store):
    ids = _scored(store)
    cv = store.get_curvature("cv")
    assert (cv["modules"], cv["meta"], cv["n_tokens"]) == (["m.0", "m.1"], {"damping": 0.1}, 12)
    sc = store.get_scoring("sc")
    assert (sc["n_candidates"], sc["n_seeds"], sc["meta"]) == (3, 4, {"k": 1})
    inf = store.influence("sc")
    assert inf["example_id"].tolist() == ids and inf["grad_norm"].tolist() == [0.1, 0.2, 0.3]
    assert [None if pd.isna(x) else x for x in inf["label"]] == ["clean", "shuffled", None]
    got_ids, m = store.sketches("sc", [ids[2], ids[0]])
    assert got_ids == [ids[2], ids[0]] and m.tolist() == [[0.5, 0.5], [1.0, 0.0]]
    with pytest.raises(StoreError, match="no scoring 'nope'"):
        store.influence("nope")


def test_a_scoring_reload_replaces_it(store):
    _scored(store)
    store.add_scoring("sc", curvature_id="cv", seed_dataset="seed", candidate_dataset="pool",
                      aggregates=store.influence("sc").drop(columns=["grad_norm", "label"]).head(2),
                      sketches=None, matrix_path=None, n_seeds=4)
    assert store.count("influence") == 2 and store.count("sketches") == 0
    assert store.influence("sc")["grad_norm"].isna().all()  # an older merge without grad norms
    got_ids, m = store.sketches("sc")
    assert got_ids == [] and m.shape == (0, 0)


def test_a_schema_2_store_gains_the_closing_loss_column(tmp_path):
    path = tmp_path / "s.duckdb"
    with Store(path) as s:
        ids = _scored(s)
        s.con.execute("ALTER TABLE influence DROP COLUMN closing_loss")  # what schema 2 wrote
        s.con.execute("UPDATE schema_info SET value = '2' WHERE key = 'version'")
    with Store(path, read_only=True) as s:  # read-only: not migrated, the new column reads as NULL
        assert s.info("version") == "2" and s.influence("sc")["closing_loss"].isna().all()
    with Store(path) as s:
        assert s.info("version") == str(SCHEMA_VERSION) == "4"
        inf = s.influence("sc")
        assert inf["example_id"].tolist() == ids and inf["closing_loss"].isna().all()  # rows kept, NULL
        assert inf["grad_norm"].tolist() == [0.1, 0.2, 0.3]


def test_a_schema_3_store_gains_the_source_free_loss_table(tmp_path):
    path = tmp_path / "s.duckdb"
    with Store(path) as s:
        ids = _scored(s)
        s.con.execute("DROP TABLE source_free_loss")  # what schema 3 wrote
        s.con.execute("UPDATE schema_info SET value = '3' WHERE key = 'version'")
    with Store(path, read_only=True) as s:  # read-only: not migrated, reads as no rows
        assert s.info("version") == "3" and len(s.source_free_losses("ck", "p")) == 0
    with Store(path) as s:
        assert s.info("version") == "4" and s.influence("sc")["example_id"].tolist() == ids
        s.add_source_free_losses("ck", "p", ids[:2], [1.5, 2.5])
        s.add_source_free_losses("ck", "p", ids[1:], [3.5, 4.5])  # a stored row is replaced, not doubled
        s.add_source_free_losses("ck2", "p", ids[:1], [9.0])
        assert s.source_free_losses("ck", "p").sort_index().to_dict() == dict(sorted(zip(ids, [1.5, 3.5, 4.5])))
        assert s.source_free_losses("ck", "other").empty and s.source_free_losses("ck2", "p").to_dict() == {ids[0]: 9.0}


# -- selections ----------------------------------------------------------------------------------
def test_clusters_and_selections(store):
    ids = _scored(store)
    store.add_clusters("cl", "sc", pd.DataFrame({"example_id": ids, "cluster": [1, 0, 1], "distance": [0.1, 0.2, 0.3]}))
    assert store.clusters("cl")["cluster"].tolist() == [c for _, c in sorted(zip(ids, [1, 0, 1]))]
    sel = pd.DataFrame({"example_id": [ids[2], ids[0]], "rank": [0, 1], "reason": ["quality", "filled"],
                        "cluster": [1, 1]})
    store.add_selection("gdig@2", strategy="gdig", budget=2, df=sel, scoring_id="sc", settings={"gamma": 0.5})
    store.add_selection("random@1", strategy="random", budget=1, df=sel.drop(columns="cluster").head(1),
                        scoring_id=None)
    got = store.selection("gdig@2")
    assert list(zip(got["src"], got["reason"], got["cluster"])) == [("c", "quality", 1), ("a", "filled", 1)]
    summary = store.selections()
    assert list(zip(summary["selection_id"], summary["size"])) == [("gdig@2", 2), ("random@1", 1)]
    assert json.loads(summary["settings"].iloc[0]) == {"gamma": 0.5}
    store.add_selection("gdig@2", strategy="gdig", budget=2, df=sel.head(1), scoring_id="sc")  # replaces
    assert len(store.selection("gdig@2")) == 1


# -- results: checkpoints, translations, metrics ------------------------------------------------------
def test_checkpoints_translations_and_metrics(store):
    add(store, [("a", "x"), ("b", "y")], name="wmt", role="eval")
    ids = store.dataset_ids("wmt")
    store.add_checkpoint("ck", "selection", "/ck", base="base", selection_id="gdig@2", meta={"steps": 3})
    ck = store.get_checkpoint("ck")
    assert (ck["path"], ck["base"], ck["meta"]) == ("/ck", "base", {"steps": 3})
    assert store.get_checkpoint("nope") is None
    hyp = pd.DataFrame({"example_id": ids[::-1], "hypothesis": ["Y", "X"], "meta": [{"n": 2}, None]})
    store.add_translations("ck", "wmt", hyp)
    store.add_translations("ck", "wmt", hyp)  # a re-run replaces
    got = store.translations("ck", "wmt")
    assert list(zip(got["src"], got["hypothesis"])) == [("a", "X"), ("b", "Y")]
    store.add_metric("ck", "wmt", "bleu", 10.0, "sig", strategy="gdig", budget=2, selection_id="gdig@2")
    store.add_metric("ck", "wmt", "bleu", 12.5, "sig", strategy="gdig", budget=2, selection_id="gdig@2")
    m = store.metrics()
    assert list(zip(m["metric"], m["value"], m["budget"])) == [("bleu", 12.5, 2)]
