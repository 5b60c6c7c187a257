"""How each stage of `gdig select` grows with the pool: the demo corpus and tiny model at several pool sizes.

    PYTHONPATH=. python benchmarks/scale.py [--sizes 10000,100000,1000000] [--out DIR] [--threads 1]
        [--set section.key=value ...] [--json FILE]

For every size N: the demo workspace is prepared with a pool of N rows (gdig.demo.prepare_demo with
demo_overrides n_pool=N; everything else is the demo's: 100 seeds, 2,000 general pairs for the
tiny model's short pretraining, 30% noise), then `gdig select` runs through gdig's own plain
executor (what `gdig select --no-prefect` runs) with each stage timed.  Preparation and
selection run each in a child process of their own, so the peak RSS printed is that of the
selection alone (the kernel's rusage of the child and, on Linux, every stage's own peak: VmHWM
reset before the stage, read after it), and the stage that set it.  Printed per size: seconds per stage,
peak RSS, the DuckDB store's size and the artifacts' size per folder; then the growth exponent of
every stage, the slope of log(seconds) on log(N) between consecutive sizes and over all of them
(1.0: linear).  Stages under 0.5 s at every size get no exponent (timer noise).  --set overrides
the demo config for the selection (e.g. influence.scoring.shard_size=5000), --demo a demo setting
besides the pool size (e.g. pretrain_steps=0).  Results:
benchmarks/README.md ("scale.py").
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MIN_SECONDS = 0.5  # below this at every size a stage's exponent is noise


def _child_env(threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               PREFECT_SERVER_ANALYTICS_ENABLED="false", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               TRANSFORMERS_VERBOSITY="error", HF_HUB_DISABLE_PROGRESS_BARS="1")
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _run_child(args: list[str], threads: int) -> tuple[dict, float, float]:
    """Run this script as a child with `args`; returns (its JSON result, wall seconds, peak RSS MB)."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        result_path = fh.name
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, *args, "--threads", str(threads), "--result", result_path],
                            env=_child_env(threads))
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"scale.py: child {' '.join(args)} failed with exit code {proc.returncode}")
    result = json.loads(Path(result_path).read_text())
    os.unlink(result_path)
    # Linux: ru_maxrss in KB; it is the peak since the child's last VmHWM reset, so the child's
    # own per-stage peaks complete it
    return result, wall, max([usage.ru_maxrss / 1024, *result.get("stage_peak", {}).values()])


def _prepare(work: Path, n_pool: int, demo: list[str], threads: int) -> dict:
    import torch
    import yaml

    from gdig.demo import prepare_demo

    torch.set_num_threads(threads)
    knobs = {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in demo)}
    prepare_demo(work, progress=False, demo_overrides={**knobs, "n_pool": n_pool})
    return json.loads((work / "prepare_timings.json").read_text())


def _rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak() -> bool:
    """Linux: reset this process's peak RSS (VmHWM), so the next reading is one stage's own peak."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _hwm_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _select(work: Path, overrides: list[str], threads: int) -> dict:
    """`gdig select --no-prefect` on the workspace, stage by stage: seconds and the peak RSS by its end."""
    import torch

    from gdig import graph
    from gdig.config import load_config
    from gdig.pipeline import PlainExecutor
    from gdig.runlock import exclusive
    from gdig.store import Store

    torch.set_num_threads(threads)
    stage_peak: dict[str, float] = {}

    class Timed(PlainExecutor):
        def _call(self, spec, inputs):
            resettable = _reset_peak()
            try:
                return super()._call(spec, inputs)
            finally:
                own = _hwm_mb() if resettable else _rss_mb()
                stage_peak[spec.name] = max(stage_peak.get(spec.name, 0.0), own)

    cfg = load_config(work / "gdig.yaml", overrides)
    with exclusive(cfg), Store(cfg.workspace.db) as store:
        ex = Timed(cfg, store, progress=False)
        result = graph.select(ex)
        n_scored = store.count("influence")
    return {"timings": ex.timings, "stage_peak": stage_peak, "n_scored": n_scored,
            "summary": result["summary"]["text"]}


def _size_mb(path: Path) -> float:
    if path.is_file():
        return path.stat().st_size / 1e6
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 1e6


def measure(n_pool: int, work: Path, overrides: list[str], threads: int, demo: list[str] = ()) -> dict:
    """One pool size: prepare (child), select (child); seconds, peak RSS and sizes."""
    prep, prep_wall, prep_rss = _run_child(["--prepare", str(n_pool), "--work", str(work),
                                            *sum((["--demo", d] for d in demo), [])], threads)
    sel, sel_wall, sel_rss = _run_child(["--select", "--work", str(work), *sum((["--set", o] for o in overrides), [])],
                                        threads)
    import yaml

    cfg = yaml.safe_load((work / "gdig.yaml").read_text())
    store = work / cfg["workspace"]["db"]
    artifacts = work / cfg["workspace"]["dir"]
    folders = {p.name: round(_size_mb(p), 2) for p in sorted(artifacts.iterdir())} if artifacts.exists() else {}
    return {"n_pool": n_pool, "n_scored": sel["n_scored"], "prepare_s": prep, "prepare_wall_s": prep_wall,
            "prepare_rss_mb": prep_rss, "stages_s": sel["timings"], "select_wall_s": sel_wall,
            "select_rss_mb": sel_rss, "stage_peak_mb": sel["stage_peak"], "store_mb": round(_size_mb(store), 2),
            "artifacts_mb": round(_size_mb(artifacts), 2), "artifact_folders_mb": folders,
            "data_mb": round(_size_mb(work / "data"), 2)}


def slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of log(y) on log(x); None without two positive points."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x > 0 and y > 0]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx if sxx else None


def exponents(runs: list[dict]) -> dict[str, dict]:
    """Per stage (and the totals): the log-log slope between consecutive sizes and over all sizes."""
    xs = [r["n_pool"] for r in runs]
    series = {s: [r["stages_s"].get(s, 0.0) for r in runs] for s in runs[0]["stages_s"]}
    series["select total"] = [sum(r["stages_s"].values()) for r in runs]
    series["peak RSS"] = [r["select_rss_mb"] for r in runs]
    for stage in runs[0].get("stage_peak_mb", {}):
        series[f"RSS {stage}"] = [r["stage_peak_mb"].get(stage, 0.0) for r in runs]
    series["store"] = [r["store_mb"] for r in runs]
    series["artifacts"] = [r["artifacts_mb"] for r in runs]
    out = {}
    for name, ys in series.items():
        if name in runs[0]["stages_s"] and max(ys) < MIN_SECONDS:
            continue
        out[name] = {"steps": [slope(xs[i:i + 2], ys[i:i + 2]) for i in range(len(xs) - 1)], "all": slope(xs, ys)}
    return out


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def table(runs: list[dict]) -> str:
    """The markdown table: one row per stage (seconds per size, exponents), then RSS and sizes."""
    exps = exponents(runs)
    sizes = [f"{r['n_pool']:,}" for r in runs]
    steps = [f"{sizes[i]}→{sizes[i + 1]}" for i in range(len(runs) - 1)]
    head = ["", *sizes, *(f"exp {s}" for s in steps), "exp all"] if len(runs) > 1 else ["", *sizes]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def row(name: str, values: list[str]) -> None:
        e = exps.get(name)
        tail = ([_fmt(v) for v in e["steps"]] + [_fmt(e["all"])] if e else ["-"] * len(runs)) if len(runs) > 1 else []
        lines.append("| " + " | ".join([name, *values, *tail]) + " |")

    for stage in runs[0]["stages_s"]:
        row(stage, [f"{r['stages_s'].get(stage, 0.0):.1f}" for r in runs])
    row("select total", [f"{sum(r['stages_s'].values()):.1f}" for r in runs])
    row("peak RSS", [f"{r['select_rss_mb']:,.0f} MB" for r in runs])
    for stage in runs[0].get("stage_peak_mb", {}):  # each stage's own peak (Linux: VmHWM reset before it)
        row(f"RSS {stage}", [f"{r['stage_peak_mb'].get(stage, 0.0):,.0f} MB" for r in runs])
    row("store", [f"{r['store_mb']:.1f} MB" for r in runs])
    row("artifacts", [f"{r['artifacts_mb']:.1f} MB" for r in runs])
    lines.append("")
    if len(runs) > 1:  # memory has a large fixed part (torch, the model): its exponent says little, this does
        lines.append("peak RSS added per 1,000 pool rows: " + ", ".join(
            f"{sizes[i]}→{sizes[i + 1]} {1000 * (b['select_rss_mb'] - a['select_rss_mb']) / (b['n_pool'] - a['n_pool']):.1f} MB"
            for i, (a, b) in enumerate(zip(runs, runs[1:]))))
    lines.append("rows scored: " + ", ".join(f"{r['n_scored']:,}" for r in runs)
                 + "; peak RSS set by stage: " + ", ".join(_peak_stage(r) for r in runs)
                 + "; demo preparation (data, tokenizer + model, pretraining) s: "
                 + ", ".join(f"{r['prepare_wall_s']:.0f}" for r in runs))
    return "\n".join(lines)


def _peak_stage(run: dict) -> str:
    """The stage with the highest peak RSS (the first of equals)."""
    return max(run["stage_peak_mb"], key=run["stage_peak_mb"].get)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000", help="pool sizes, comma-separated")
    ap.add_argument("--out", default=None, help="working directory, one workspace per size (default: a temp dir)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the demo's default: 1)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="config override for the selection, repeatable")
    ap.add_argument("--demo", action="append", default=[], metavar="KEY=VALUE",
                    help="a demo setting besides n_pool (gdig/demo/config.yaml `demo:`), e.g. pretrain_steps=0")
    ap.add_argument("--json", default=None, help="also write every measurement to this file")
    # the children's entry points
    ap.add_argument("--prepare", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--select", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--work", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.prepare is not None or args.select:
        work = Path(args.work)
        out = _prepare(work, args.prepare, args.demo, args.threads) if args.prepare is not None \
            else _select(work, args.overrides, args.threads)
        Path(args.result).write_text(json.dumps(out))
        return 0

    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    root = Path(args.out or tempfile.mkdtemp(prefix="gdig-scale-"))
    runs = []
    for n in sizes:
        run = measure(n, root / f"pool-{n}", args.overrides, args.threads, args.demo)
        runs.append(run)
        print(f"pool {n:,}: select {run['select_wall_s']:.1f} s, peak RSS {run['select_rss_mb']:,.0f} MB, "
              f"store {run['store_mb']:.1f} MB, artifacts {run['artifacts_mb']:.1f} MB "
              f"({', '.join(f'{k} {v:.1f}' for k, v in run['artifact_folders_mb'].items())})", flush=True)
        if args.json:  # after every size: a long run that dies keeps what it measured
            Path(args.json).write_text(json.dumps(runs, indent=1))
    print()
    print(table(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
