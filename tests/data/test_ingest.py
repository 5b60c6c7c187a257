"""Ingestion: the CLI's exit codes and summaries, rejects, idempotence, transactions, config."""

from __future__ import annotations

import hashlib
import json

import pytest
from typer.testing import CliRunner

from gdig.cli import app
from gdig.config import parse_config
from gdig.data.ingest import IngestError, example_id, ingest, ingest_config
from gdig.store import Store

runner = CliRunner()


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def good_rows(n, offset=0):
    return [{"src": f"Satz {i}", "tgt": f"sentence {i}", "src_lang": "de", "tgt_lang": "en"}
            for i in range(offset, offset + n)]


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def counts(db):
    with Store(db) as s:
        return {t: s.count(t) for t in ("datasets", "examples", "dataset_examples", "rejects", "ingested_files")}


def test_example_id_is_the_documented_hash():
    expected = hashlib.sha256("de\x1fen\x1fHallo\x1fHello".encode()).hexdigest()[:20]
    assert example_id("de", "en", "Hallo", "Hello") == expected
    assert example_id("en", "de", "Hallo", "Hello") != expected


def test_cli_success_prints_counts(tmp_path):
    f = write_jsonl(tmp_path / "pool.jsonl", good_rows(5) + good_rows(2))  # 2 exact duplicates
    res = cli("ingest", "--db", tmp_path / "s.duckdb", "--role", "candidates", "--name", "pool", "--no-progress", f)
    assert res.exit_code == 0, res.output
    assert "read 7, added 5, duplicates 2, rejected 0" in res.stdout
    with Store(tmp_path / "s.duckdb") as s:
        df = s.dataset_examples("pool")
        assert list(df["src"]) == [f"Satz {i}" for i in range(5)]
        assert list(df["position"]) == list(range(5))
        assert list(df["source_row"]) == [1, 2, 3, 4, 5]
        assert s.get_dataset("pool")["n_duplicates"] == 2


# each bad input: (file name, bytes, row, reason)
BAD = [
    ("empty_src.jsonl", b'{"src": "  ", "tgt": "x"}\n', 1, "empty source"),
    ("empty_tgt.jsonl", b'{"src": "a", "tgt": "x"}\n{"src": "b", "tgt": "\\t "}\n', 2, "empty target"),
    ("utf8.jsonl", b'{"src": "a", "tgt": "x"}\n{"src": "\xff", "tgt": "x"}\n', 2, "invalid utf-8"),
    ("ctrl.jsonl", b'{"src": "a\\u0000b", "tgt": "x"}\n', 1, "control characters"),
    ("missing.jsonl", b'{"src": "a"}\n', 1, "missing field 'tgt'"),
    ("pair.jsonl", b'{"src": "a", "tgt": "x", "src_lang": "de", "tgt_lang": "fr"}\n', 1,
     "wrong language pair de-fr (expected de-en)"),
    ("notjson.jsonl", b'{"src": "a", "tgt": "x"}\nsrc\ttgt\n', 2, "not valid JSON (file says .jsonl)"),
    ("empty.jsonl", b"", 0, "empty file"),
    ("notjson.json", b"hello, world", 0, "not valid JSON (file says .json)"),
    ("tsv.tsv", b"a\tb\nc\n", 2, "expected 2 tab-separated columns, found 1"),
]


@pytest.mark.parametrize("name,data,row,reason", BAD, ids=[b[0] for b in BAD])
def test_bad_input_exits_2_then_skip_invalid_records_rejects(tmp_path, name, data, row, reason):
    f = tmp_path / name
    f.write_bytes(data)
    db = tmp_path / "s.duckdb"
    args = ("ingest", "--db", db, "--role", "candidates", "--name", "pool", "--src-lang", "de",
            "--tgt-lang", "en", "--no-progress", f)
    res = cli(*args)
    assert res.exit_code == 2
    where = f"{f}:{row}" if row else f"{f}"
    assert f"{where}: {reason}" in res.stderr
    assert "--skip-invalid" in res.stderr
    assert len(res.stderr.splitlines()) == 1  # one bad row: one line
    assert counts(db) == {"datasets": 0, "examples": 0, "dataset_examples": 0, "rejects": 0, "ingested_files": 0}

    res = cli(*args, "--skip-invalid")
    assert res.exit_code == 0, res.output
    assert "rejected 1" in res.stdout
    with Store(db) as s:
        rj = s.rejects("pool")
        assert list(zip(rj["source_file"], rj["source_row"], rj["reason"])) == [(str(f), row, reason)]
        n_valid = data.count(b"\n") - 1 if row else 0
        assert s.get_dataset("pool")["n_rows"] == n_valid
        assert s.get_dataset("pool")["n_rejected"] == 1


def test_rejects_keep_the_raw_text(tmp_path):
    f = tmp_path / "a.jsonl"
    f.write_bytes(b'{"src": "gut", "tgt": "good"}\n{"src": "b\xe4d", "tgt": "bad"}\n{"src": "x", "tgt": ""}\n')
    with Store(tmp_path / "s.duckdb") as s:
        res = ingest(s, f, role="seed", name="seed", src_lang="de", tgt_lang="en", skip_invalid=True, progress=False)
        assert (res.read, res.added, res.rejected) == (3, 1, 2)
        rj = s.rejects("seed")
        assert list(rj["raw"]) == ['{"src": "b\\xe4d", "tgt": "bad"}', '{"src": "x", "tgt": ""}']
        assert list(rj["reason"]) == ["invalid utf-8", "empty target"]


def test_summary_counts_per_reason_and_shows_first_examples(tmp_path):
    recs = [{"src": "a", "tgt": ""} for _ in range(7)] + [{"src": "", "tgt": "b"}] + good_rows(1)
    f = write_jsonl(tmp_path / "a.jsonl", recs)
    with Store(tmp_path / "s.duckdb") as s, pytest.raises(IngestError) as err:
        ingest(s, f, role="seed", name="seed", src_lang="de", tgt_lang="en", progress=False)
    msg = str(err.value)
    assert msg.startswith("8 invalid row(s) in 1 file(s); nothing was written")
    assert "     7  empty target" in msg and "     1  empty source" in msg
    assert "first 5 example(s):" in msg
    assert f"{f}:5: empty target" in msg and f"{f}:6: empty target" not in msg
    assert len(err.value.rejects) == 8


def test_reingest_is_a_noop_and_new_files_append(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", good_rows(4))
    b = write_jsonl(tmp_path / "b.jsonl", good_rows(3, offset=2))  # rows 2, 3 already in a
    with Store(tmp_path / "s.duckdb") as s:
        r1 = ingest(s, a, role="candidates", name="pool", progress=False)
        r2 = ingest(s, a, role="candidates", name="pool", progress=False)
        assert (r1.added, r2.read, r2.added, r2.skipped_files) == (4, 0, 0, 1)
        r3 = ingest(s, [a, b], role="candidates", name="pool", progress=False)
        assert (r3.skipped_files, r3.read, r3.added, r3.duplicates) == (1, 3, 1, 2)
        df = s.dataset_examples("pool")
        assert list(df["position"]) == [0, 1, 2, 3, 4]
        assert df["src"].iloc[-1] == "Satz 4" and df["source_file"].iloc[-1] == str(b)
        assert s.count("ingested_files") == 2


def test_cli_reingest_twice_is_noop(tmp_path):
    f = write_jsonl(tmp_path / "a.jsonl", good_rows(3))
    args = ("ingest", "--db", tmp_path / "s.duckdb", "--role", "seed", "--name", "seed", "--no-progress", f)
    assert cli(*args).exit_code == 0
    res = cli(*args)
    assert res.exit_code == 0 and "added 0" in res.stdout and "skipped files 1" in res.stdout
    assert counts(tmp_path / "s.duckdb")["examples"] == 3


def test_failure_half_way_leaves_the_store_unchanged(tmp_path, monkeypatch):
    a = write_jsonl(tmp_path / "a.jsonl", good_rows(3))
    b = write_jsonl(tmp_path / "b.jsonl", good_rows(3, offset=10))
    db = tmp_path / "s.duckdb"
    with Store(db) as s:
        ingest(s, a, role="candidates", name="pool", progress=False)
    before = counts(db)
    real = Store._insert_df

    def dying(self, table, df, replace=False):
        if table == "dataset_examples":  # examples already inserted when this dies
            raise RuntimeError("disk full (injected)")
        return real(self, table, df, replace)

    monkeypatch.setattr(Store, "_insert_df", dying)
    with Store(db) as s, pytest.raises(RuntimeError, match="injected"):
        ingest(s, b, role="candidates", name="pool", progress=False)
    monkeypatch.undo()
    assert counts(db) == before
    with Store(db) as s:  # and the same file ingests cleanly afterwards
        assert s.get_dataset("pool")["n_rows"] == 3
        assert ingest(s, b, role="candidates", name="pool", progress=False).added == 3
        assert s.get_dataset("pool")["n_rows"] == 6


def test_labels_and_language_pair_from_rows(tmp_path):
    f = write_jsonl(tmp_path / "a.jsonl", [dict(r, label=lab) for r, lab in zip(good_rows(2), ["clean", "shuffled"])])
    with Store(tmp_path / "s.duckdb") as s:
        res = ingest(s, f, role="candidates", name="pool", progress=False)
        assert (res.src_lang, res.tgt_lang) == ("de", "en")
        assert list(s.dataset_examples("pool")["label"]) == ["clean", "shuffled"]
        g = write_jsonl(tmp_path / "g.jsonl", [{"src": "a", "tgt": "b", "src_lang": "fr", "tgt_lang": "en"}])
        with pytest.raises(IngestError, match=r"g.jsonl:1: wrong language pair fr-en \(expected de-en\)"):
            ingest(s, g, role="candidates", name="pool", progress=False)  # the dataset's pair
        with pytest.raises(IngestError, match="exists as role=candidates de-en"):
            ingest(s, g, role="candidates", name="pool", src_lang="fr", tgt_lang="en", progress=False)
        with pytest.raises(IngestError, match="unknown role"):
            ingest(s, g, role="train", name="x", progress=False)


def test_no_language_pair_is_an_error(tmp_path):
    f = tmp_path / "a.tsv"
    f.write_text("Hallo\tHello\n", encoding="utf-8")
    res = cli("ingest", "--db", tmp_path / "s.duckdb", "--role", "seed", "--name", "seed", f)
    assert res.exit_code == 2 and "no language pair" in res.stderr and "--src-lang/--tgt-lang" in res.stderr


def test_cli_hf_rows_and_moses(tmp_path):
    f = write_jsonl(tmp_path / "wmt.jsonl", [{"translation": {"de": "Hallo", "en": "Hello"}}])
    db = tmp_path / "s.duckdb"
    res = cli("ingest", "--db", db, "--role", "eval", "--name", "wmt", f)
    assert res.exit_code == 2 and "without a direction" in res.stderr
    res = cli("ingest", "--db", db, "--role", "eval", "--name", "wmt", "--src-lang", "German",
              "--tgt-lang", "English", "--no-progress", f)
    assert res.exit_code == 0 and "wmt (eval, de-en): read 1, added 1" in res.stdout
    (tmp_path / "m.de").write_text("a\nb\nc\n", encoding="utf-8")
    (tmp_path / "m.en").write_text("x\ny\n", encoding="utf-8")
    res = cli("ingest", "--db", db, "--role", "eval", "--name", "m", "--src-lang", "de", "--tgt-lang", "en",
              tmp_path / "m")
    assert res.exit_code == 2
    assert f"{tmp_path / 'm.de'} has 3 lines" in res.stderr and f"{tmp_path / 'm.en'} has 2 lines" in res.stderr


def test_cli_limit_and_format(tmp_path):
    f = tmp_path / "data.txt"
    write_jsonl(f, good_rows(10))
    res = cli("ingest", "--db", tmp_path / "s.duckdb", "--role", "seed", "--name", "s", "--format", "jsonl",
              "--limit", "4", "--no-progress", f)
    assert res.exit_code == 0 and "read 4, added 4" in res.stdout


def test_ingest_save_to_disk_dataset(tmp_path):
    from datasets import Dataset

    Dataset.from_dict({"translation": [{"de": "Hallo", "en": "Hello"}, {"de": "Ja", "en": "Yes"}]}).save_to_disk(
        tmp_path / "ds")
    with Store(tmp_path / "s.duckdb") as s:
        res = ingest(s, tmp_path / "ds", role="eval", name="ds", src_lang="de", tgt_lang="en", progress=False)
        assert res.added == 2
        assert ingest(s, tmp_path / "ds", role="eval", name="ds", progress=False).skipped_files == 1


def _config(tmp_path, candidates, seed, evals, **data):
    return parse_config({
        "languages": {"src": "German", "tgt": "en"},
        "model": {"name_or_path": "tiny"},
        "data": {"candidates": [{"path": str(p)} for p in candidates], "seed": [{"path": str(p)} for p in seed],
                 "eval": evals, **data},
    }, base_dir=tmp_path)


def test_ingest_config_roles_and_append(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", good_rows(3))
    sd = write_jsonl(tmp_path / "seedset.jsonl", good_rows(2, offset=100))
    tsv = tmp_path / "newstest.tsv"
    tsv.write_text("Eins\tOne\nZwei\tTwo\n", encoding="utf-8")
    hf = write_jsonl(tmp_path / "flores.jsonl", [{"translation": {"en": "Three", "de": "Drei"}}])
    evals = [{"path": str(tsv)}, {"path": str(hf), "name": "flores-dev"}]
    with Store(tmp_path / "s.duckdb") as s:
        names = ingest_config(_config(tmp_path, [a], [sd], evals), s, progress=False)
        assert names == {"candidates": ["pool"], "seed": ["seed"], "eval": ["newstest", "flores-dev"]}
        assert list(s.datasets()["name"].sort_values()) == ["flores-dev", "newstest", "pool", "seed"]
        assert s.dataset_examples("flores-dev")["src"].tolist() == ["Drei"]
        before = {t: s.count(t) for t in ("examples", "dataset_examples", "ingested_files")}
        ingest_config(_config(tmp_path, [a], [sd], evals), s, progress=False)  # a no-op
        assert {t: s.count(t) for t in before} == before
        b = write_jsonl(tmp_path / "b.jsonl", good_rows(2, offset=50))
        ingest_config(_config(tmp_path, [a, b], [sd], evals), s, progress=False)
        pool = s.dataset_examples("pool")
        assert list(pool["position"]) == [0, 1, 2, 3, 4]
        assert list(pool["src"].iloc[3:]) == ["Satz 50", "Satz 51"]


def test_ingest_config_skip_invalid_and_name_clash(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", good_rows(2) + [{"src": "x", "tgt": " "}])
    with Store(tmp_path / "s.duckdb") as s:
        with pytest.raises(IngestError, match="empty target"):
            ingest_config(_config(tmp_path, [a], [], []), s, progress=False)
        ingest_config(_config(tmp_path, [a], [], [], skip_invalid=True), s, progress=False)
        assert s.get_dataset("pool")["n_rejected"] == 1
        clash = [{"path": str(a)}, {"path": str(a), "name": "a"}]
        with pytest.raises(IngestError, match="name 'a' is taken"):
            ingest_config(_config(tmp_path, [], [], clash, skip_invalid=True), s, progress=False)
