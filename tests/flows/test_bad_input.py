"""The bad-input corpus: every case makes `gdig select` exit 2 with one line that names the file
and row (or the config key) and the reason, leaves the store exactly as it was, and is an error
a retry cannot fix (gdig.errors.BadInput: the Prefect tasks fail at once, never retried).

Each case starts from a copy of one store into which the good workspace was already ingested,
so a case that breaks one input leaves every other input a no-op.  Variants that are accepted
(a BOM, CRLF line ends, repeated rows) are pinned by the rows they read.
"""

from __future__ import annotations

import gzip
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from test_failures import write_config
from test_flows import build_workspace


@dataclass
class Env:
    """What a case builds its input from: the workspace's data and a directory of its own."""

    data: Path  # the good workspace's data directory (pool.jsonl, seed.jsonl, eval.jsonl)
    model: Path
    tmp: Path

    def rows(self, name: str = "pool") -> list[dict]:
        return [json.loads(line) for line in (self.data / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]

    def file(self, name: str, content: bytes | str) -> Path:
        p = self.tmp / name
        p.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        return p

    def jsonl(self, name: str, rows: list) -> Path:
        return self.file(name, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))

    def pool_with(self, row: int, **fields) -> Path:
        """pool.jsonl with fields of one row (0-based) replaced (None: the field removed)."""
        rows = self.rows()
        rows[row] = {k: v for k, v in {**rows[row], **fields}.items() if v is not None}
        return self.jsonl("pool.jsonl", rows)


def pool(path: Path) -> dict:
    return {"data.candidates": [{"path": str(path)}]}


def seed(path: Path) -> dict:
    return {"data.seed": [{"path": str(path)}]}


@dataclass
class Case:
    name: str
    make: Callable[[Env], dict]  # -> config changes (dotted keys)
    expect: Callable[[Env], list[str]]  # substrings of the one stderr line


def _truncated(e: Env) -> Path:
    text = (e.data / "pool.jsonl").read_text(encoding="utf-8")
    return e.file("pool.jsonl", text[: len(text) - 40])  # the last row cut mid-object, no newline


def _latin1(e: Env) -> Path:
    rows = e.rows()
    rows[6]["tgt"] = "Café crème"
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    return e.file("pool.jsonl", "\n".join(lines).encode("latin-1") + b"\n")


def _not_gguf(e: Env) -> dict:
    d = e.tmp / "gguf-model"
    d.mkdir()
    (d / "model.gguf").write_text("this is not a GGUF file\n", encoding="utf-8")
    return {"model.name_or_path": str(d), "model.gguf_file": "model.gguf"}


def _tsv(e: Env) -> Path:
    rows = e.rows()[:10]
    lines = [f"{r['src']}\t{r['tgt']}" for r in rows]
    lines[4] += "\textra"
    return e.file("pool.tsv", "\n".join(lines) + "\n")


CASES = [
    # whole files
    Case("empty pool file", lambda e: pool(e.file("pool.jsonl", "")), lambda e: [f"{e.tmp}/pool.jsonl", "empty file"]),
    Case("empty seed file", lambda e: seed(e.file("seed.jsonl", "")), lambda e: [f"{e.tmp}/seed.jsonl", "empty file"]),
    Case("blank-only pool file", lambda e: pool(e.file("pool.jsonl", "\n \n\t\n")), lambda e: ["pool.jsonl", "empty file"]),
    Case("truncated file", lambda e: pool(_truncated(e)), lambda e: [f"{e.tmp}/pool.jsonl:96", "not valid JSON"]),
    Case("gzip file named .jsonl", lambda e: pool(e.file("pool.jsonl", gzip.compress((e.data / "pool.jsonl").read_bytes()))),
         lambda e: [f"{e.tmp}/pool.jsonl", "not valid text"]),
    Case("NUL bytes in a text file", lambda e: pool(e.file("pool.jsonl", (e.data / "pool.jsonl").read_bytes()[:500] + b"\x00\x00")),
         lambda e: ["pool.jsonl", "not valid text"]),
    Case("UTF-16 file", lambda e: pool(e.file("pool.jsonl", (e.data / "pool.jsonl").read_text(encoding="utf-8").encode("utf-16"))),
         lambda e: ["pool.jsonl", "not valid text"]),
    Case("latin-1 row", lambda e: pool(_latin1(e)), lambda e: [f"{e.tmp}/pool.jsonl:7", "invalid utf-8"]),
    Case("JSON file that is not JSON", lambda e: pool(e.file("pool.json", '[{"src": "a", "tgt": ')),
         lambda e: ["pool.json", "not valid JSON"]),
    Case("JSON file that is not a list", lambda e: pool(e.file("pool.json", '"just a string"')),
         lambda e: ["pool.json", "expected a JSON list of rows"]),
    Case("TSV row with three columns", lambda e: pool(_tsv(e)), lambda e: [f"{e.tmp}/pool.tsv:5", "expected 2 tab-separated columns, found 3"]),
    Case("missing pool file", lambda e: pool(e.tmp / "nowhere.jsonl"), lambda e: ["nowhere.jsonl"]),
    # rows
    Case("empty target", lambda e: pool(e.pool_with(3, tgt="")), lambda e: [f"{e.tmp}/pool.jsonl:4", "empty target"]),
    Case("whitespace target", lambda e: pool(e.pool_with(3, tgt="  \t ")), lambda e: ["pool.jsonl:4", "empty target"]),
    Case("empty source", lambda e: pool(e.pool_with(0, src="")), lambda e: ["pool.jsonl:1", "empty source"]),
    Case("10 MB line", lambda e: pool(e.pool_with(9, src="x" * 10_000_000)),
         lambda e: ["pool.jsonl:10", "source is 10000000 characters > max_chars"]),
    Case("missing field", lambda e: pool(e.pool_with(2, tgt=None)), lambda e: ["pool.jsonl:3", "missing field 'tgt'"]),
    Case("field of another type", lambda e: pool(e.pool_with(2, tgt=5)), lambda e: ["pool.jsonl:3", "field 'tgt' is not a string"]),
    Case("row that is not an object", lambda e: pool(e.jsonl("pool.jsonl", [*e.rows()[:5], ["a", "b"]])),
         lambda e: ["pool.jsonl:6", "row is not a JSON object"]),
    Case("control characters", lambda e: pool(e.pool_with(1, src="bell \x07 here")), lambda e: ["pool.jsonl:2", "control characters"]),
    Case("row in another language pair", lambda e: pool(e.pool_with(4, src_lang="de", tgt_lang="en")),
         lambda e: ["pool.jsonl:5", "wrong language pair de-en (expected xa-xb)"]),
    Case("unknown language code", lambda e: pool(e.pool_with(4, src_lang="not a language")),
         lambda e: ["pool.jsonl:5", "unknown language 'not a language'"]),
    Case("seed set in another language pair",
         lambda e: seed(e.jsonl("seed.jsonl", [{**r, "src_lang": "cs", "tgt_lang": "en"} for r in e.rows("seed")])),
         lambda e: [f"{e.tmp}/seed.jsonl:1", "wrong language pair cs-en (expected xa-xb)"]),
    # data sections
    Case("eval set that is the pool", lambda e: {"data.eval": [{"path": str(e.data / "pool.jsonl")}]},
         lambda e: ["data.eval source", "pool.jsonl", "held out"]),
    Case("eval set that is a copy of the seed set",
         lambda e: {"data.eval": [{"path": str(e.file("copy.jsonl", (e.data / "seed.jsonl").read_bytes()))}]},
         lambda e: ["copy.jsonl", "data.seed source", "held out"]),
    Case("two eval sets under one name",
         lambda e: {"data.eval": [{"path": str(e.data / "eval.jsonl")}, {"path": str(e.jsonl("eval.jsonl", e.rows("eval2")))}]},
         lambda e: ["eval.jsonl", "dataset name 'eval' is taken"]),
    Case("empty seed section", lambda e: {"data.seed": []}, lambda e: ["data.seed: empty or missing"]),
    # the config
    Case("wrong type", lambda e: {"selection.budgets": "many"}, lambda e: ["selection.budgets"]),
    Case("wrong type of a number", lambda e: {"finetune.lr": "fast"}, lambda e: ["finetune.lr"]),
    Case("unknown key", lambda e: {"selection.budgetz": [16]}, lambda e: ["selection.budgetz"]),
    Case("negative budget", lambda e: {"selection.budgets": [-5]}, lambda e: ["selection.budgets", "positive"]),
    Case("budget larger than the pool", lambda e: {"selection.budgets": [16, 1000]},
         lambda e: ["selection.budgets: budget 1000 is larger than the candidate pool (96 rows"]),
    Case("unknown strategy", lambda e: {"selection.strategies": ["gdig", "bogus"]}, lambda e: ["selection.strategies"]),
    Case("negative step count", lambda e: {"pool_finetune.max_steps": -1}, lambda e: ["pool_finetune.max_steps"]),
    Case("template without {src}", lambda e: {"prompt.template": "translate: "}, lambda e: ["prompt.template", "{src}"]),
    # the model
    Case("model path that is a data file", lambda e: {"model.name_or_path": str(e.data / "pool.jsonl")},
         lambda e: [f"{e.data}/pool.jsonl: a file, not a model directory"]),
    Case("model directory without a model", lambda e: {"model.name_or_path": str(e.data)},
         lambda e: [f"cannot load model/tokenizer from {e.data}"]),
    Case("GGUF file that is not one", _not_gguf, lambda e: ["model.gguf", "not a GGUF file"]),
    Case("missing model", lambda e: {"model.name_or_path": str(e.tmp / "no-model")},
         lambda e: ["no-model: no such file or directory"]),
    Case("pool checkpoint that is missing", lambda e: {"pool_finetune.enabled": False, "pool_finetune.checkpoint": str(e.tmp / "ck")},
         lambda e: ["pool_finetune.checkpoint", "no such directory"]),
    Case("max_length above the model's limit", lambda e: {"prompt.max_length": 4096},
         lambda e: ["prompt.max_length 4096 is above the position limit 512"]),
]


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    """The good workspace, its data ingested into a store; and that store's contents."""
    from gdig.config import load_config
    from gdig.pipeline import run_stage
    from gdig.store import Store

    root = tmp_path_factory.mktemp("bad-input")
    config = build_workspace(root)
    cfg = load_config(config)
    with Store(cfg.workspace.db) as store:
        run_stage("ingest", cfg, store, progress=False)
    return config, Path(cfg.workspace.db), dump(cfg.workspace.db)


def dump(db) -> dict[str, str]:
    """Every table of a store as sorted CSV (the store's whole content)."""
    from gdig.store import Store
    from gdig.store.schema import TABLES

    with Store(db) as store:
        out = {}
        for name in TABLES:
            t = store.table(name)
            out[name] = t.astype(str).sort_values(list(t.columns)).to_csv(index=False) if len(t.columns) else ""
        out["info"] = str(sorted(store.con.execute("SELECT * FROM info").fetchall())) if _has_info(store) else ""
    return out


def _has_info(store) -> bool:
    return bool(store.con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'info'").fetchone()[0])


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_exits_2_with_one_line_and_leaves_the_store_as_it_was(case, ingested, tmp_path):
    from typer.testing import CliRunner

    from gdig.cli import app
    from gdig.errors import bad_input_cause

    config, db, before = ingested
    env = Env(config.parent / "data", config.parent / "model", tmp_path / "in")
    env.tmp.mkdir()
    changed = write_config(tmp_path / "cfg" / "gdig.yaml", config, **case.make(env))
    ws_db = tmp_path / "cfg" / "ws" / "gdig.duckdb"
    ws_db.parent.mkdir(parents=True)
    shutil.copy(db, ws_db)

    res = CliRunner().invoke(app, ["select", str(changed), "--no-prefect", "--no-progress"])
    assert res.exit_code == 2, (res.exit_code, res.stderr[-2000:], res.exception)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr[-2000:]
    for part in case.expect(env):
        assert part in lines[0], lines[0]
    print(f"{case.name}: {lines[0][:300]}")  # the corpus's lines, shown with -s
    assert dump(ws_db) == before

    # never retried: what failed is a BadInput (the Prefect tasks fail at once on it), or the
    # config was refused before any flow run started
    debug = CliRunner().invoke(app, ["select", str(changed), "--no-prefect", "--no-progress", "--debug"])
    err = debug.exception
    assert (isinstance(err, SystemExit) and err.code == 2) or bad_input_cause(err) is not None, repr(err)
    assert dump(ws_db) == before


def test_the_corpus_is_at_least_30_cases():
    assert len(CASES) >= 30 and len({c.name for c in CASES}) == len(CASES)


# -- accepted variants, pinned by the rows they read --------------------------------------------------

VARIANTS = {
    "BOM": lambda text: "\ufeff" + text,
    "CRLF": lambda text: text.replace("\n", "\r\n"),
    "BOM and CRLF": lambda text: "\ufeff" + text.replace("\n", "\r\n"),
    "repeated rows": lambda text: text + text.split("\n", 1)[0] + "\n" + text,
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_accepted_variants_read_the_very_rows_of_the_plain_file(variant, ingested, tmp_path):
    from gdig.config import load_config
    from gdig.pipeline import run_stage
    from gdig.store import Store

    config, db, _ = ingested
    text = (config.parent / "data" / "pool.jsonl").read_text(encoding="utf-8")
    path = tmp_path / "pool.jsonl"
    path.write_bytes(VARIANTS[variant](text).encode("utf-8"))
    cfg = load_config(write_config(tmp_path / "cfg" / "gdig.yaml", config, **pool(path)))
    with Store(cfg.workspace.db) as store:
        run_stage("ingest", cfg, store, progress=False)
        got = store.dataset_examples("pool")[["src", "tgt"]].to_dict("records")
        info = store.datasets().set_index("name").loc["pool"]
    with Store(db) as store:
        want = store.dataset_examples("pool")[["src", "tgt"]].to_dict("records")
    assert got == want  # no BOM in the first source, no \r at the end of a target
    assert int(info["n_duplicates"]) == (97 if variant == "repeated rows" else 0)  # counted, kept once
