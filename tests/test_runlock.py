"""The workspace lock covers every command that writes a workspace: `gdig ingest` started while a
run holds the workspace fails at once with one line (exit 1) and writes nothing; read-only
commands meanwhile say which run holds the store."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from gdig.cli import app
from gdig.store import Store

ROOT = Path(__file__).resolve().parents[1]

# a running select/run, as far as the workspace sees it: the lock held, the store open for writing
HOLDER = """
import sys, time
from gdig.runlock import exclusive
from gdig.store import Store
with exclusive(sys.argv[1]), Store(sys.argv[1]) as store:
    print("held", flush=True)
    time.sleep(120)
"""


def _holding(db: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(db)], cwd=ROOT, text=True, stdout=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.readline().strip() == "held"
    return proc


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_ingest_while_a_run_holds_the_workspace_fails_with_one_line(tmp_path):
    db, data = tmp_path / "ws.duckdb", tmp_path / "pool.jsonl"
    data.write_text("".join(json.dumps({"src": f"s{i}", "tgt": f"t{i}"}) + "\n" for i in range(3)), encoding="utf-8")
    Store(db).close()
    before = _sha(db)
    ingest = ["ingest", str(data), "--db", str(db), "--role", "candidates", "--name", "pool", "--src-lang", "de",
              "--tgt-lang", "en", "--no-progress"]
    holder = _holding(db)
    try:
        res = CliRunner().invoke(app, ingest)
        report = CliRunner().invoke(app, ["report", "--db", str(db), "--out", str(tmp_path / "report")])
    finally:
        holder.kill()
        holder.wait()
    assert res.exit_code == 1, res.output  # not bad input: it can run when the run has finished
    [line] = res.stderr.strip().splitlines()
    assert line.startswith(f"error: {db}: the workspace is in use by another gdig run (pid {holder.pid} on "), line
    assert line.endswith("run again when it has finished, or use another workspace")
    assert _sha(db) == before
    assert report.exit_code == 2
    [line] = report.stderr.strip().splitlines()
    assert line.startswith(f"error: {db}: cannot open the store: a gdig run holds it (pid {holder.pid} on "), line
    assert line.endswith("run again when it has finished")
    # the holder is gone (kill -9: the kernel dropped its lock): the same ingest goes through
    res = CliRunner().invoke(app, ingest)
    assert res.exit_code == 0, res.output
    with Store(db, read_only=True) as s:
        assert s.count("examples") == 3
