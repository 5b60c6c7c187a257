"""Fault injection: kill -9 `gdig select` / `gdig run` at named points, run the same command
again, and check that it completes, redoes only what was unfinished, and ends byte-identical to
an uninterrupted run.

The kill is gdig's own (gdig.faults): GDIG_KILL_AT=<point>[#n] makes the gdig process SIGKILL
itself the n-th time it passes the point, so every kill lands at the same place on every
machine.  GDIG_TRACE_POINTS records the points the rerun passes: the stages it ran (a stage
Prefect took from its cache runs nothing) and the units of work its loops redid (training steps,
curvature / seed / scoring / translation batches).

Per executor, one workspace directory is used for every point (Prefect's cached results name
absolute paths): a select point starts from an empty workspace, a run point from the state an
uninterrupted `gdig select` left (copied back in), so each point costs one killed command and
one rerun.

    python tests/flows/fault_harness.py [--points NAME ...] [--executors prefect plain] [--work DIR]

prints the table points x executors.  tests/flows/test_fault_injection.py runs it (two points
in CI, all of them marked slow).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(HERE), str(HERE.parent), str(ROOT)]

from file_bytes import content  # noqa: E402
from test_failures import child_env  # noqa: E402
from test_flows import build_workspace  # noqa: E402

# (label, command, kill point): spread over every kind of stage of select and run
POINTS = [
    ("pool finetune, mid-epoch", "select", "finetune-pool@3"),
    ("a curvature shard", "select", "curvature shard: factors@1#2"),
    ("the eigen pass", "select", "curvature shard: eigenvalues@1#2"),
    ("seed products", "select", "seed gradients@1"),
    ("a score shard", "select", "scoring@1#2"),
    ("the merge", "select", "merge-scores/done"),
    ("clustering", "select", "cluster-resample/done"),
    ("export", "select", "export/done"),
    ("a selection finetune, between saves", "run", "finetune gdig@16@3"),
    ("translation", "run", "translate@1#2"),
    ("metrics", "run", "metrics/done#2"),
    ("the report", "run", "report/done"),
    # inside writes (gdig.workspace.atomic_file: the temporary written, not renamed; or renamed,
    # not sealed), a checkpoint saved without its done marker, and a DuckDB transaction uncommitted
    ("inside a tensor write (a curvature partial)", "select", "tensor write#2"),
    ("the fitted curvature renamed, not sealed", "select", "tensor seal#8"),
    ("inside a parquet write (a score shard)", "select", "parquet write#2"),
    ("inside the score matrix write", "select", "parquet write#4"),
    ("before a DuckDB commit (a selection's)", "select", "store commit#9"),
    ("inside the resume-state write", "select", "resume write"),
    ("inside a checkpoint write", "run", "checkpoint write"),
]
EXECUTORS = {"prefect": [], "plain": ["--no-prefect"]}
# the harness's workspace: EK-FAC (so there is an eigen pass), finetunes with a resume save
# between the kill and the end (save_every 2 of 4 steps)
OVERRIDES = {
    "prefilter": {"enabled": True, "langid": {"enabled": False}},  # verdicts to compare (no langid: invented pair)
    "influence": {"curvature": {"strategy": "ekfac", "batch_size": 16},
                  "scoring": {"shard_size": 32, "batch_size": 16, "sketch_dim_g": 4, "sketch_dim_a": 4}},
    "pool_finetune": {"enabled": True, "max_steps": 4, "save_every": 2, "batch_size": 16},
    "finetune": {"max_steps": 4, "save_every": 2, "batch_size": 8},
}


@dataclass
class Outcome:
    label: str
    command: str
    point: str
    executor: str
    killed: bool = False
    resumed: bool = False
    identical: bool = False
    stages: Counter = field(default_factory=Counter)  # stage -> calls in the rerun
    units: Counter = field(default_factory=Counter)  # loop -> units of work redone
    differs: list[str] = field(default_factory=list)
    error: str = ""
    message: str = ""  # the one line a failed command printed (the disk-full case)


def prepare(root: Path) -> Path:
    """The tiny test workspace (demo data, tiny model) with the harness's overrides."""
    import yaml

    config = build_workspace(root)
    data = yaml.safe_load(config.read_text())
    for section, values in OVERRIDES.items():
        data[section] = {**data.get(section, {}), **values}
    config.write_text(yaml.safe_dump(data))
    return config


def gdig(command: str, config: Path, executor: str, env: dict, timeout: int = 900) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "gdig.cli", command, str(config), "--no-progress", *EXECUTORS[executor]]
    return subprocess.run(args, env=child_env(**env), cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def fingerprint(config: Path, command: str) -> dict[str, bytes]:
    """What must be byte-identical: exports and selections, the influence table, the score
    matrix, the curvature (fitted and its partials), the seed products and the prefilter verdicts
    (select), plus the checkpoints' metrics and the report's comparison table (run)."""
    from gdig.config import load_config
    from gdig.store import Store

    cfg = load_config(config)
    ws = Path(cfg.workspace.dir)
    out = {f"export {p.name}": p.read_bytes() for p in sorted((ws / "selections").glob("*.jsonl"))}
    for pattern in ("scores/*.matrix.parquet", "curvature/*.safetensors", "curvature/partials/*.safetensors",
                    "seeds/*.safetensors"):
        out |= {f"file {p.relative_to(ws)}": content(p) for p in sorted(ws.glob(pattern))}
    with Store(cfg.workspace.db, read_only=True) as store:
        sel = store.table("selections").drop(columns=["created_at"])
        out["selections"] = sel.sort_values(["selection_id", "rank"]).to_csv(index=False).encode()
        infl = store.table("influence").sort_values(["scoring_id", "example_id"])
        out["influence table"] = infl.to_csv(index=False).encode()
        verdicts = store.table("prefilter").drop(columns=["created_at"])
        out["prefilter verdicts"] = verdicts.sort_values(["dataset", "signature", "example_id"]).to_csv(index=False).encode()
        if command == "run":
            m = store.table("metrics").drop(columns=["created_at", "signature"])
            out["metrics"] = m.sort_values(["checkpoint_id", "eval_set", "metric"]).to_csv(index=False).encode()
    if command == "run":
        out["report table"] = (ws / "reports" / "latest" / "comparison.csv").read_bytes()
    return out


def trace_counts(path: Path) -> tuple[Counter, Counter]:
    """(stage -> calls, loop -> units) from a GDIG_TRACE_POINTS file."""
    stages, units = Counter(), Counter()
    lines = path.read_text().splitlines() if path.exists() else []
    for point in lines:
        if "@" in point:
            units[point.rpartition("@")[0]] += 1  # one point per unit done
        elif not point.endswith(("/done", " write", " seal", "store commit")):  # writes are not stages
            stages[point] += 1
    return stages, units


class Harness:
    """One executor's workspace, its uninterrupted reference, and the points run on it."""

    def __init__(self, work: Path, executor: str, env: dict):
        self.executor, self.env = executor, env
        self.root = work / executor
        shutil.rmtree(self.root, ignore_errors=True)
        self.config = prepare(self.root)
        self.ws = self.root / "ws"
        self.after_select = work / f"{executor}-after-select"
        self.reference: dict[str, dict[str, bytes]] = {}
        self.baseline: dict[str, tuple[Counter, Counter]] = {}

    def _cmd(self, command: str, **env) -> subprocess.CompletedProcess:
        return gdig(command, self.config, self.executor, {**self.env, **env})

    def _reset(self, command: str) -> None:
        shutil.rmtree(self.ws, ignore_errors=True)
        if command == "run":
            shutil.copytree(self.after_select, self.ws, symlinks=True)

    def uninterrupted(self, commands: tuple[str, ...] = ("select", "run")) -> None:
        """The reference: select, then run, on a fresh workspace; and what a rerun on the finished
        workspace runs anyway (the baseline of the stage counts)."""
        shutil.rmtree(self.ws, ignore_errors=True)
        for command in commands:
            res = self._cmd(command)
            if res.returncode != 0:
                raise RuntimeError(f"uninterrupted {command} ({self.executor}) failed:\n{res.stderr[-3000:]}")
            if command == "select":
                shutil.rmtree(self.after_select, ignore_errors=True)
                shutil.copytree(self.ws, self.after_select, symlinks=True)
            self.reference[command] = fingerprint(self.config, command)
            trace = self.root / f"baseline-{command}.trace"
            trace.unlink(missing_ok=True)
            assert self._cmd(command, GDIG_TRACE_POINTS=str(trace)).returncode == 0
            self.baseline[command] = trace_counts(trace)

    def point(self, label: str, command: str, point: str) -> Outcome:
        out = Outcome(label, command, point, self.executor)
        self._reset(command)
        killed = self._cmd(command, GDIG_KILL_AT=point)
        out.killed = killed.returncode == -9
        if not out.killed:
            out.error = f"not killed (exit {killed.returncode}): the point was never reached"
            return out
        trace = self.root / "rerun.trace"
        trace.unlink(missing_ok=True)
        rerun = self._cmd(command, GDIG_TRACE_POINTS=str(trace))
        out.resumed = rerun.returncode == 0
        if not out.resumed:
            out.error = (rerun.stderr.strip().splitlines() or ["?"])[-1]
            return out
        out.stages, out.units = trace_counts(trace)
        got, want = fingerprint(self.config, command), self.reference[command]
        out.differs = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
        out.identical = not out.differs
        return out


def disk_full(work: Path, executor: str, env: dict, size: str = "2m") -> Outcome:
    """The disk fills up mid-select: the workspace on a `size` tmpfs, `gdig select` must fail
    with one line (no traceback); the tmpfs is then grown (space freed) and the same command
    must end byte-identical to an uninterrupted run.  Mounting needs root of a mount namespace:
    run the harness under `unshare -rm` (main's --disk-full)."""
    h = Harness(work, executor, env)
    h.uninterrupted(("select",))
    out = Outcome(f"disk full ({size} tmpfs), then space freed", "select", f"ENOSPC at {size}", executor)
    shutil.rmtree(h.ws)
    h.ws.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(h.ws)], check=True)
    try:
        full = h._cmd("select")
        lines = [ln for ln in full.stderr.splitlines() if ln.startswith("error:")]
        out.killed = full.returncode == 2 and len(lines) == 1 and "Traceback" not in full.stderr
        if not out.killed:
            out.error = f"the full disk gave exit {full.returncode}: {full.stderr.strip()[-2000:]}"
            return out
        out.message = lines[0]
        subprocess.run(["mount", "-o", "remount,size=512m", str(h.ws)], check=True)
        rerun = h._cmd("select")
        out.resumed = rerun.returncode == 0
        if not out.resumed:
            out.error = (rerun.stderr.strip().splitlines() or ["?"])[-1]
            return out
        got, want = fingerprint(h.config, "select"), h.reference["select"]
        out.differs = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
        out.identical = not out.differs
        return out
    finally:
        subprocess.run(["umount", "-l", str(h.ws)], check=False)


def describe(out: Outcome, baseline: tuple[Counter, Counter]) -> str:
    """The stages the rerun ran beyond what a rerun of a finished workspace runs anyway, and the
    units of work its loops redid."""
    stages, units = baseline
    extra = out.stages - stages
    work = ", ".join(f"{k} {v}" for k, v in sorted(out.units.items())) or "none"
    ran = ", ".join(f"{k}{'' if v == 1 else f' x{v}'}" for k, v in sorted(extra.items())) or "none"
    return f"{sum(extra.values())} ({ran}); work redone: {work}"


def table(outcomes: list[Outcome], baselines: dict) -> str:
    head = "| point | kill point | command | executor | killed | resumed | identical | stages rerun (beyond a finished rerun); work redone |"
    lines = [head, "|" + "---|" * 8]
    for o in outcomes:
        yes = lambda b: "yes" if b else "NO"  # noqa: E731
        what = describe(o, baselines[(o.executor, o.command)]) if o.resumed else o.error
        if o.differs:
            what += f"; differs: {', '.join(o.differs)}"
        lines.append(f"| {o.label} | `{o.point}` | {o.command} | {o.executor} | {yes(o.killed)} | {yes(o.resumed)} "
                     f"| {yes(o.identical)} | {what} |")
    return "\n".join(lines)


def run(work: Path, points: list[tuple[str, str, str]], executors: list[str], env: dict,
        log=print) -> tuple[list[Outcome], dict]:
    outcomes, baselines = [], {}
    commands = tuple(c for c in ("select", "run") if any(p[1] == c for p in points))
    for executor in executors:
        t0 = time.time()
        h = Harness(work, executor, env if executor == "prefect" else {})
        h.uninterrupted(("select", "run") if "run" in commands else ("select",))
        for command in commands:
            baselines[(executor, command)] = h.baseline[command]
        log(f"{executor}: reference done in {time.time() - t0:.0f} s; baseline stages per rerun: "
            + json.dumps({c: dict(h.baseline[c][0]) for c in h.baseline}))
        for label, command, point in points:
            t1 = time.time()
            outcomes.append(h.point(label, command, point))
            o = outcomes[-1]
            log(f"{executor} {point}: killed {o.killed}, resumed {o.resumed}, identical {o.identical} "
                f"({time.time() - t1:.0f} s) {o.error} {o.differs or ''}")
    return outcomes, baselines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=None, help="working directory (default: a temporary one)")
    ap.add_argument("--points", nargs="*", default=None, help="kill points to run (default: all)")
    ap.add_argument("--executors", nargs="*", default=list(EXECUTORS), choices=list(EXECUTORS))
    ap.add_argument("--disk-full", metavar="SIZE", default=None,
                    help="run the disk-full case instead (workspace on a SIZE tmpfs, e.g. 2m); needs `unshare -rm`")
    args = ap.parse_args()
    import os
    import tempfile

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    points = [p for p in POINTS if args.points is None or p[2] in args.points]
    work = args.work or Path(tempfile.mkdtemp(prefix="gdig-faults-"))
    work.mkdir(parents=True, exist_ok=True)
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        env = {"PREFECT_API_URL": PREFECT_API_URL.value()}
        if args.disk_full:
            outcomes = [disk_full(work, e, env if e == "prefect" else {}, args.disk_full) for e in args.executors]
            for o in outcomes:
                print(f"{o.executor}: failed with one line {o.killed} ({o.message or o.error}); "
                      f"rerun after space freed {o.resumed}; identical {o.identical} {o.differs or ''}", flush=True)
            sys.exit(0 if all(o.identical for o in outcomes) else 1)
        outcomes, baselines = run(work, points, args.executors, env, log=lambda m: print(m, flush=True))
    print(table(outcomes, baselines))
    sys.exit(0 if all(o.identical for o in outcomes) else 1)


if __name__ == "__main__":
    main()
