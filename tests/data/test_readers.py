"""Every reader, format detection, and the per-row / per-file problems readers report."""

from __future__ import annotations

import json

import pytest

from gdig.data import validate as V
from gdig.data.readers import ReadError, Source, content_hash, open_source, read_rows


def rows_of(path, fmt="auto", src_lang=None, tgt_lang=None, **kw):
    source = open_source(path, fmt, src_lang=src_lang, tgt_lang=tgt_lang, **kw)
    return source, list(read_rows(source, src_lang, tgt_lang))


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


# -- JSON lines and JSON lists ----------------------------------------------------------------


def test_jsonl_src_tgt_with_languages_and_label(tmp_path):
    p = write_jsonl(tmp_path / "a.jsonl", [
        {"src": "Guten Morgen", "tgt": "Good morning", "src_lang": "German", "tgt_lang": "eng", "label": "clean"},
        {"src": "Danke", "tgt": "Thanks"},
    ])
    source, rows = rows_of(p)
    assert source.fmt == "jsonl"
    assert [(r.row, r.src, r.tgt, r.src_lang, r.tgt_lang, r.label, r.reason) for r in rows] == [
        (1, "Guten Morgen", "Good morning", "de", "en", "clean", None),
        (2, "Danke", "Thanks", None, None, None, None),
    ]
    assert rows[0].file == str(p)
    assert json.loads(rows[1].raw) == {"src": "Danke", "tgt": "Thanks"}


def test_rows_without_languages_take_the_callers(tmp_path):
    p = write_jsonl(tmp_path / "a.jsonl", [{"src": "Danke", "tgt": "Thanks"}])
    _, rows = rows_of(p, src_lang="de", tgt_lang="en")
    assert (rows[0].src_lang, rows[0].tgt_lang) == ("de", "en")


def test_json_list(tmp_path):
    p = tmp_path / "a.json"
    p.write_text(json.dumps([{"src": "eins", "tgt": "one"}, {"src": "zwei", "tgt": "two"}]), encoding="utf-8")
    source, rows = rows_of(p)
    assert source.fmt == "json"
    assert [(r.row, r.src, r.tgt) for r in rows] == [(1, "eins", "one"), (2, "zwei", "two")]


def test_json_extension_holding_json_lines(tmp_path):
    # datasets' Dataset.to_json writes JSON lines under a .json name
    p = write_jsonl(tmp_path / "a.json", [{"src": "eins", "tgt": "one"}, {"src": "zwei", "tgt": "two"}])
    _, rows = rows_of(p)
    assert [(r.row, r.src) for r in rows] == [(1, "eins"), (2, "zwei")]


@pytest.mark.parametrize("container", ["jsonl", "json"])
def test_reference_gdig_format(tmp_path, container):
    recs = [
        {"src_lang": "German", "trg_lang": "English", "src_text": "Das Haus ist rot.", "trg_text": "The house is red."},
        {"src_lang": "German", "trg_lang": "English", "src_text": "Ja.", "trg_text": "Yes."},
    ]
    p = tmp_path / f"ref.{container}"
    if container == "jsonl":
        write_jsonl(p, recs)
    else:
        p.write_text(json.dumps(recs, indent=1), encoding="utf-8")
    _, rows = rows_of(p)
    assert [(r.src, r.tgt, r.src_lang, r.tgt_lang, r.reason) for r in rows] == [
        ("Das Haus ist rot.", "The house is red.", "de", "en", None),
        ("Ja.", "Yes.", "de", "en", None),
    ]


def test_reference_gdig_missing_field(tmp_path):
    p = write_jsonl(tmp_path / "ref.jsonl", [{"src_lang": "German", "trg_lang": "English", "src_text": "Ja."}])
    _, rows = rows_of(p)
    assert rows[0].reason == "missing field 'trg_text'"


@pytest.mark.parametrize("suffix", ["jsonl", "json"])
def test_hf_translation_rows_take_direction_from_caller(tmp_path, suffix):
    p = write_jsonl(tmp_path / f"wmt.{suffix}", [
        {"translation": {"de": "Hallo Welt", "en": "Hello world"}},
        {"translation": {"de": "Tschüss", "en": "Bye"}},
    ])
    _, rows = rows_of(p, src_lang="de", tgt_lang="en")
    assert [(r.src, r.tgt, r.src_lang, r.tgt_lang) for r in rows] == [
        ("Hallo Welt", "Hello world", "de", "en"), ("Tschüss", "Bye", "de", "en")]
    _, rows = rows_of(p, src_lang="English", tgt_lang="German")  # the other direction
    assert [(r.src, r.tgt, r.src_lang, r.tgt_lang) for r in rows][0] == ("Hello world", "Hallo Welt", "en", "de")


def test_hf_translation_rows_without_direction_is_an_error(tmp_path):
    p = write_jsonl(tmp_path / "wmt.jsonl", [{"translation": {"de": "Hallo", "en": "Hello"}}])
    with pytest.raises(ReadError, match="without a direction.*--src-lang/--tgt-lang"):
        rows_of(p)


def test_hf_translation_rows_wrong_pair_and_missing_side(tmp_path):
    p = write_jsonl(tmp_path / "wmt.jsonl", [
        {"translation": {"fr": "Bonjour", "en": "Hello"}},
        {"translation": {"en": "Hello"}},
        {"translation": {"de": "Hallo", "en": 3}},
        {"nothing": 1},
    ])
    _, rows = rows_of(p, fmt="hf", src_lang="de", tgt_lang="en")
    assert [r.reason for r in rows] == [
        "wrong language pair fr-en (expected de-en)",
        "missing field 'translation.de'",
        "field 'translation.en' is not a string",
        "missing field 'translation'",
    ]


# -- TSV -----------------------------------------------------------------------------------------


def test_tsv_with_and_without_header(tmp_path):
    p = tmp_path / "a.tsv"
    p.write_text("src\ttgt\nHallo\tHello\nJa\tYes\n", encoding="utf-8")
    source, rows = rows_of(p, src_lang="de", tgt_lang="en")
    assert source.fmt == "tsv"
    assert [(r.row, r.src, r.tgt, r.src_lang) for r in rows] == [(2, "Hallo", "Hello", "de"), (3, "Ja", "Yes", "de")]
    p.write_text("Hallo\tHello\r\nJa\tYes\tExtra\n", encoding="utf-8")
    _, rows = rows_of(p)
    assert (rows[0].src, rows[0].tgt, rows[0].reason) == ("Hallo", "Hello", None)  # \r\n handled
    assert rows[1].reason == "expected 2 tab-separated columns, found 3"


# -- Moses pairs ---------------------------------------------------------------------------------


def moses(tmp_path, src_lines, tgt_lines):
    (tmp_path / "corpus.de").write_text("".join(s + "\n" for s in src_lines), encoding="utf-8")
    (tmp_path / "corpus.en").write_text("".join(s + "\n" for s in tgt_lines), encoding="utf-8")
    return tmp_path / "corpus"


@pytest.mark.parametrize("given", ["corpus", "corpus.de", "corpus.en"])
def test_moses_pair_by_prefix_or_either_file(tmp_path, given):
    moses(tmp_path, ["Hallo", "Ja"], ["Hello", "Yes"])
    source, rows = rows_of(tmp_path / given, src_lang="de", tgt_lang="en")
    assert source.fmt == "moses"
    assert [f.name for f in source.files] == ["corpus.de", "corpus.en"]
    assert [(r.row, r.src, r.tgt) for r in rows] == [(1, "Hallo", "Hello"), (2, "Ja", "Yes")]
    assert source.stem == "corpus"


def test_moses_reverse_direction(tmp_path):
    prefix = moses(tmp_path, ["Hallo"], ["Hello"])
    _, rows = rows_of(prefix, src_lang="en", tgt_lang="de")
    assert (rows[0].src, rows[0].tgt, rows[0].src_lang) == ("Hello", "Hallo", "en")


def test_moses_line_count_mismatch_names_both_files(tmp_path):
    prefix = moses(tmp_path, ["a", "b", "c"], ["x", "y"])
    with pytest.raises(ReadError) as err:
        rows_of(prefix, src_lang="de", tgt_lang="en")
    msg = str(err.value)
    assert "corpus.de has 3 lines" in msg and "corpus.en has 2 lines" in msg


def test_moses_without_direction_is_an_error(tmp_path):
    prefix = moses(tmp_path, ["a"], ["x"])
    with pytest.raises(ReadError, match="no direction"):
        rows_of(prefix)


def test_moses_invalid_utf8_per_line(tmp_path):
    prefix = moses(tmp_path, ["gut", "x"], ["good", "y"])
    (tmp_path / "corpus.en").write_bytes(b"good\n\xc3\x28 broken\n")
    _, rows = rows_of(prefix, src_lang="de", tgt_lang="en")
    assert [r.reason for r in rows] == [None, V.INVALID_UTF8]
    assert "\\xc3" in rows[1].raw


# -- datasets saved with save_to_disk, and the hub -------------------------------------------


def test_save_to_disk_src_tgt_columns(tmp_path):
    from datasets import Dataset

    Dataset.from_dict({"src": ["Hallo", "Ja"], "tgt": ["Hello", "Yes"]}).save_to_disk(tmp_path / "ds")
    source, rows = rows_of(tmp_path / "ds", src_lang="de", tgt_lang="en")
    assert source.fmt == "disk" and source.stem == "ds"
    assert [(r.row, r.src, r.tgt, r.src_lang) for r in rows] == [(1, "Hallo", "Hello", "de"), (2, "Ja", "Yes", "de")]


def test_save_to_disk_translation_column_with_splits(tmp_path):
    from datasets import Dataset, DatasetDict

    DatasetDict({
        "train": Dataset.from_dict({"translation": [{"de": "Hallo", "en": "Hello"}]}),
        "validation": Dataset.from_dict({"translation": [{"de": "Ja", "en": "Yes"}, {"de": "Nein", "en": "No"}]}),
    }).save_to_disk(tmp_path / "wmt")
    _, rows = rows_of(tmp_path / "wmt", split="validation", src_lang="de", tgt_lang="en")
    assert [(r.src, r.tgt) for r in rows] == [("Ja", "Yes"), ("Nein", "No")]
    with pytest.raises(ReadError, match="splits train, validation; choose one"):
        rows_of(tmp_path / "wmt", src_lang="de", tgt_lang="en")


def test_directory_that_is_not_a_saved_dataset(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(ReadError, match="not a dataset saved with datasets' save_to_disk"):
        open_source(tmp_path / "d")


def test_hub_dataset_offline_says_so(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    source = open_source("hf:someone/some-wmt-set:de-en", split="train")
    assert (source.fmt, source.hub_name, source.hub_config, source.stem) == ("hub", "someone/some-wmt-set", "de-en", "some-wmt-set")
    with pytest.raises(ReadError) as err:
        list(read_rows(source, "de", "en"))
    assert "not reachable" in str(err.value) and "save_to_disk" in str(err.value)


# -- detection and file-level problems ----------------------------------------------------------


def test_format_detection_from_content(tmp_path):
    p = tmp_path / "data.txt"
    p.write_text('{"src": "a", "tgt": "b"}\n', encoding="utf-8")
    assert open_source(p).fmt == "jsonl"
    p.write_text('[{"src": "a", "tgt": "b"}]', encoding="utf-8")
    assert open_source(p).fmt == "json"
    p.write_text("a\tb\n", encoding="utf-8")
    assert open_source(p).fmt == "tsv"
    p.write_text("just some text\n", encoding="utf-8")
    with pytest.raises(ReadError, match="cannot tell the format"):
        open_source(p)
    with pytest.raises(ReadError, match="no such file"):
        open_source(tmp_path / "missing.jsonl")
    with pytest.raises(ReadError, match="unknown format 'csv'"):
        open_source(p, "csv")


def test_format_override(tmp_path):
    p = tmp_path / "data.txt"
    p.write_text('{"src_text": "a", "trg_text": "b", "src_lang": "de", "trg_lang": "en"}\n', encoding="utf-8")
    source, rows = rows_of(p, "jsonl")
    assert source.fmt == "jsonl" and rows[0].src == "a" and rows[0].tgt_lang == "en"


def test_file_level_problems_are_rows_numbered_zero(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"\n  \n")
    assert [(r.row, r.reason) for r in rows_of(empty)[1]] == [(0, "empty file")]
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("src,tgt\na,b\n", encoding="utf-8")
    assert [(r.row, r.reason) for r in rows_of(bad_json)[1]] == [(0, "not valid JSON (file says .json)")]
    gz = tmp_path / "packed.jsonl"
    gz.write_bytes(b"\x1f\x8b\x08\x00binary")
    assert [(r.row, r.reason) for r in rows_of(gz)[1]] == [(0, "not valid text (file says .jsonl)")]


def test_jsonl_per_line_problems(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_bytes(
        b'{"src": "ok", "tgt": "fine"}\n'
        b'src,tgt\n'
        b'{"src": "caf\xe9", "tgt": "x"}\n'
        b'\n'
        b'["a", "b"]\n'
        b'{"src": "a"}\n'
        b'{"src": 5, "tgt": "b"}\n'
        b'{"src": "a", "tgt": "b", "src_lang": "Klingon"}\n'
    )
    _, rows = rows_of(p)
    assert [(r.row, r.reason) for r in rows] == [
        (1, None),
        (2, "not valid JSON (file says .jsonl)"),
        (3, "invalid utf-8"),
        (5, "row is not a JSON object"),  # blank line 4 holds no row
        (6, "missing field 'tgt'"),
        (7, "field 'src' is not a string"),
        (8, "unknown language 'Klingon'"),
    ]


def test_json_list_invalid_utf8_found_per_row(tmp_path):
    p = tmp_path / "a.json"
    p.write_bytes(b'[{"src": "gut", "tgt": "good"}, {"src": "b\xffse", "tgt": "evil"}]')
    _, rows = rows_of(p)
    assert [(r.row, r.reason) for r in rows] == [(1, None), (2, "invalid utf-8")]


def test_limit_and_content_hash(tmp_path):
    p = write_jsonl(tmp_path / "a.jsonl", [{"src": str(i), "tgt": str(i)} for i in range(10)])
    source, rows = rows_of(p, limit=3)
    assert [r.row for r in rows] == [1, 2, 3]
    h_limited = content_hash(source)
    h_full = content_hash(open_source(p))
    assert h_limited != h_full  # a limited read is not the whole file
    copy = tmp_path / "b.jsonl"
    copy.write_bytes(p.read_bytes())
    assert content_hash(open_source(copy)) == h_full  # content, not the name
    write_jsonl(copy, [{"src": "x", "tgt": "y"}])
    assert content_hash(open_source(copy)) != h_full


def test_validate_checks():
    assert V.check_text("a", "b") is None
    assert V.check_text(" \t", "b") == "empty source"
    assert V.check_text("a", "") == "empty target"
    assert V.check_text("a\x07", "b") == "control characters"
    assert V.check_text("a\tb", "c\nd") is None  # tab and newline are allowed
    assert V.check_text("a", "b\x85") == "control characters"
    assert V.check_pair(("de", "fr"), ("de", "en")) == "wrong language pair de-fr (expected de-en)"
    assert V.check_pair((None, None), ("de", "en")) is None
    assert V.split_lines(b"a\r\nb\x85c\nd") == [b"a", b"b\x85c", b"d"]
    assert isinstance(Source("x", "jsonl"), Source)


def test_moses_prefix_with_dots(tmp_path):
    (tmp_path / "newstest2019.de-en.de").write_text("Hallo\n", encoding="utf-8")
    (tmp_path / "newstest2019.de-en.en").write_text("Hello\n", encoding="utf-8")
    source, rows = rows_of(tmp_path / "newstest2019.de-en", src_lang="de", tgt_lang="en")
    assert source.fmt == "moses" and source.stem == "newstest2019.de-en"
    assert (rows[0].src, rows[0].tgt) == ("Hallo", "Hello")


def test_the_package_keeps_its_public_names_and_its_hash_covers_every_module(monkeypatch):
    import pkgutil
    from pathlib import Path

    import gdig.data.readers as readers
    from gdig_flows.tasks.keys import module_source_hash

    for name in ("FORMATS", "ReadError", "Row", "Source", "content_hash", "detect_schema", "open_source",
                 "read_rows"):
        assert hasattr(readers, name), name
    # the ingest stage declares the package: an edit to any one reader module renews its key
    before = module_source_hash("gdig.data.readers")
    real = Path.read_bytes
    for m in pkgutil.iter_modules(readers.__path__):
        edited = Path(readers.__path__[0]) / f"{m.name}.py"
        monkeypatch.setattr(Path, "read_bytes", lambda self, e=edited: real(self) + (b"#" if self == e else b""))
        assert module_source_hash("gdig.data.readers") != before, m.name
    monkeypatch.setattr(Path, "read_bytes", real)
    assert module_source_hash("gdig.data.readers") == before
