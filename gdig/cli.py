"""The `gdig` command.  Each command is a thin shell over a library function."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import typer

from gdig import __version__
from gdig.data.readers.formats import FORMATS

app = typer.Typer(
    name="gdig",
    help="G-DIG instruction-data selection for machine translation: ingest data, select with "
    "influence + gradient diversity, finetune and evaluate against baselines.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click help: flags read `--progress / --no-progress`, not `<bool>`
)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print an error to stderr and exit with `code` (2: bad input, 1: a stage failed)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gdig {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """gdig: select translation finetuning data with G-DIG and prove the selection."""


# --- commands are registered below, one section per concern ---------------------------------


# -- ingest (gdig.data.ingest) ------------------------------------------------------------------
@app.command("ingest")
def ingest_cmd(
    paths: list[str] = typer.Argument(..., help="Files, Moses prefixes (x for x.de + x.en), save_to_disk directories or hf:<dataset>."),
    db: Path = typer.Option(..., "--db", help="The DuckDB store (created if missing)."),
    role: str = typer.Option(..., "--role", help="candidates | seed | eval."),
    name: str = typer.Option(..., "--name", help="Dataset name in the store (rows are appended to it)."),
    src_lang: str | None = typer.Option(None, "--src-lang", help="Source language (ISO 639-1 code or name); needed for HF translation rows, Moses pairs, TSV."),
    tgt_lang: str | None = typer.Option(None, "--tgt-lang", help="Target language (ISO 639-1 code or name)."),
    fmt: str = typer.Option("auto", "--format", help=" | ".join(FORMATS) + "."),
    skip_invalid: bool = typer.Option(False, "--skip-invalid/--no-skip-invalid", help="Load the valid rows and record invalid ones in the rejects table instead of stopping."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Read at most this many rows from each path."),
    max_chars: int = typer.Option(20_000, "--max-chars", min=0, help="A row whose source or target is longer (in characters) is invalid; 0: no limit."),
    split: str | None = typer.Option(None, "--split", help="Split of a save_to_disk / hub dataset with several splits."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Load parallel data into the store; invalid rows stop the ingest (exit 2) unless --skip-invalid.
    A running select/run on the same store makes it fail at once (exit 1)."""
    from gdig.data.ingest import IngestError, ingest
    from gdig.runlock import WorkspaceBusy, exclusive
    from gdig.store import Store, StoreError

    try:
        with exclusive(db), Store(db) as store:  # never between the stages of a running select/run
            result = ingest(store, paths, role=role, name=name, src_lang=src_lang, tgt_lang=tgt_lang,
                            fmt=fmt, skip_invalid=skip_invalid, limit=limit, split=split, progress=progress,
                            max_chars=max_chars or None)
    except WorkspaceBusy as err:
        fail(str(err), 1)
    except (IngestError, StoreError) as err:
        fail(str(err), 2)
    typer.echo(result.summary())


# -- select (gdig.pipeline) ----------------------------------------------------------------------
@app.command("select")
def select_cmd(
    config: Path = typer.Argument(..., help="The workspace YAML config."),
    overrides: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", help="Override a config key, e.g. --set selection.budgets=[100,200] (repeatable)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
    prefect: bool = typer.Option(True, "--prefect/--no-prefect", help="Run as the Prefect flow (cached, retried stages, visible in the Prefect UI; default) or as plain Python in this process (no Prefect)."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of a failure (default: one line on stderr)."),
) -> None:
    """Run ingest -> pool checkpoint -> curvature -> seed products -> scoring -> quality + diversity
    selection for every configured strategy and budget; export JSONL and print a summary."""
    from gdig.config import ConfigError, load_config, require_data
    from gdig.pipeline import select_pipeline

    try:
        cfg = require_data(load_config(config, overrides))
    except ConfigError as err:
        fail(str(err), 2)
    if not progress:
        from gdig.progress import quiet_libraries

        quiet_libraries()
    if prefect:
        out = _run_flow("select", config=str(config), overrides=list(overrides), progress=progress, debug=debug)
        typer.echo(out["result"]["summary"]["text"])
        _echo_flow_run(out)
        return
    typer.echo(_guarded(lambda: select_pipeline(cfg, progress=progress), debug).render())


@app.command("explain")
def explain_cmd(
    example_id: str = typer.Argument(..., help="The candidate's example id (the example_id field of an exported selection)."),
    db: Path = typer.Option(..., "--db", help="The DuckDB store a `gdig select` run wrote."),
    scoring: str | None = typer.Option(None, "--scoring", help="Scoring id; default: the most recent scoring in the store."),
    k: int = typer.Option(5, "-k", min=1, help="How many seeds to list on each side."),
) -> None:
    """Show the seeds a candidate helps most (influence < 0) and hurts most (> 0)."""
    from gdig.selection.explain import explain, latest_scoring
    from gdig.store import Store, StoreError

    try:
        with Store(db, read_only=True) as store:
            typer.echo(explain(store, scoring or latest_scoring(store), example_id, k).render())
    except (StoreError, ValueError) as err:
        fail(str(err), 2)


def _guarded(fn, debug: bool = False):
    """Run a pipeline call, turning known errors into a clean exit (2: bad input or config, a
    missing model or dataset; 1: a stage failed); `debug` lets the traceback through."""
    from gdig.errors import BadInput, disk_full
    from gdig.store import StoreError

    try:
        return fn()
    except BadInput as err:
        if debug:
            raise
        fail(str(err), 2)
    except Exception as err:
        if debug:
            raise
        full = disk_full(err)
        if full is not None:
            fail(str(full), 2)
        if not isinstance(err, (StoreError, ValueError, RuntimeError, OSError)):
            raise
        fail(f"{type(err).__name__}: {err}", 1)


# -- run and demo (Prefect flows via the "gdig.flows" entry points; gdig never imports Prefect) --
def _run_flow(name: str, **params):
    """Run the Prefect flow registered as `name` in the gdig.flows entry-point group."""
    from importlib.metadata import entry_points

    import os

    progress = params.pop("progress", True)
    os.environ["GDIG_PROGRESS"] = "1" if progress else "0"  # read by the tasks
    if not progress:
        from gdig.progress import quiet_libraries

        quiet_libraries()
    found = [ep for ep in entry_points(group="gdig.flows") if ep.name == name]
    if not found:
        fail(f"no Prefect flow {name!r} installed (entry-point group gdig.flows): reinstall gdig "
             f"(pip install -e .) or pass --no-prefect", 2)
    out = found[0].load()(**params)
    if out.get("prefect_unavailable"):  # no flow run was made: what failed and what to do, one line
        fail(out["error"], 2)
    if not out["ok"]:
        _echo_flow_run(out)
        if out.get("bad_input"):  # the very line --no-prefect prints
            fail(out["error"], 2)
        fail(f"flow {name} {out['state']}: {out['error']}", 1)
    return out


def _echo_flow_run(out: dict) -> None:
    if out.get("timings"):
        typer.echo("\nstage                 runs  cached  seconds")
        for t in out["timings"]:
            typer.echo(f"{t['stage']:<20} {t['runs']:>5} {t['cached']:>7} {t['seconds']:>8.1f}")
    typer.echo(f"prefect flow run: {out['flow_run_id']} ({out['state']}, {out['seconds']:.0f} s)")
    typer.echo(f"  UI: {out['ui']}" if out.get("ui") else f"  {out.get('note', '')}")


def _echo_run_result(result: dict) -> None:
    """The flow's result, rendered as `--no-prefect` renders its own (gdig.pipeline.render_run)."""
    from gdig.pipeline import render_run

    typer.echo(render_run(result))


def _run_plain(cfg, progress: bool, command: str, config):
    """`run` without Prefect: gdig.pipeline.run_pipeline (it writes the run's report too)."""
    from gdig.pipeline import run_pipeline
    from gdig.report import run_header

    if not progress:
        from gdig.progress import quiet_libraries

        quiet_libraries()
    return run_pipeline(cfg, progress=progress, header=run_header(cfg, command, config))


def _command(*words, overrides=()) -> str:
    return " ".join(["gdig", *map(str, words), *(f"--set {o}" for o in overrides)])


@app.command("run")
def run_cmd(
    config: Path = typer.Argument(..., help="The workspace YAML config."),
    overrides: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", help="Override a config key, e.g. --set selection.budgets=[100,200] (repeatable)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
    prefect: bool = typer.Option(True, "--prefect/--no-prefect", help="Run as the Prefect flow (default) or as plain Python in this process."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of a failure (default: one line on stderr)."),
) -> None:
    """Select (every strategy x budget), finetune the base model on each selection with equal
    steps per budget, translate and score every eval set, and write the comparison report."""
    from gdig.config import ConfigError, load_config, require_data

    try:
        cfg = require_data(load_config(config, overrides))
    except ConfigError as err:
        fail(str(err), 2)
    if prefect:
        out = _run_flow("run", config=str(config), overrides=list(overrides), progress=progress, debug=debug)
        _echo_run_result(out["result"])
        _echo_flow_run(out)
        return
    typer.echo(_guarded(lambda: _run_plain(cfg, progress, _command("run", config, "--no-prefect",
                                                                          overrides=overrides), config), debug).render())


@app.command("demo")
def demo_cmd(
    workdir: Path | None = typer.Option(None, "--workdir", help="Directory for the demo workspace (default: a new ./gdig-demo-<timestamp>)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the generated corpus, noise and model."),
    overrides: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", help="Override a key of the generated config, e.g. --set selection.budgets=[200], or a demo size, e.g. --set demo.n_pool=10000 (repeatable)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
    prefect: bool = typer.Option(True, "--prefect/--no-prefect", help="Run as the Prefect flow (default) or as plain Python in this process."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of a failure (default: one line on stderr)."),
    threads: int | None = typer.Option(None, "--threads", min=1, help="Torch threads for the demo (default: the demo config's `threads`, 1: the tiny model's operations are too small to split, and on a busy machine each split waits for a preempted thread)."),
) -> None:
    """Offline end to end: generate an invented language pair with injected noise and a tiny
    model, select with G-DIG and baselines, finetune, evaluate, and write the report."""
    import time

    import torch

    from gdig.config import ConfigError
    from gdig.demo import demo_settings, split_demo_overrides
    from gdig.demo.proof import what_it_shows

    try:  # demo.* sizes the corpus and the model: it must reach prepare_demo, or refuse here
        demo_overrides, config_overrides = split_demo_overrides(overrides)
    except ConfigError as err:
        fail(str(err), 2)
    if workdir is None:
        workdir = Path.cwd() / f"gdig-demo-{time.strftime('%Y%m%d-%H%M%S')}"
    typer.echo(f"demo workspace: {workdir}")
    threads_before = torch.get_num_threads()
    torch.set_num_threads(threads or demo_settings(demo_overrides)["threads"])
    try:
        if prefect:
            out = _run_flow("demo", workdir=str(workdir), seed=seed, overrides=list(overrides), progress=progress,
                            debug=debug)
            _echo_run_result(out["result"])
            typer.echo(what_it_shows(out["result"]))
            typer.echo(f"config: {out['result']['config']}")
            _echo_flow_run(out)
            return
        from gdig.config import load_config
        from gdig.demo import prepare_demo

        config = _guarded(lambda: prepare_demo(workdir, seed=seed, progress=progress,
                                               demo_overrides=demo_overrides), debug)
        cfg = _guarded(lambda: load_config(config, config_overrides), debug)
        run = _guarded(lambda: _run_plain(cfg, progress, _command("demo", "--workdir", workdir, "--no-prefect",
                                                                         overrides=overrides), config), debug)
        typer.echo(run.render())
        typer.echo(what_it_shows(run.result))
        typer.echo(f"config: {config}")
    finally:
        torch.set_num_threads(threads_before)


# -- report (gdig.report) --------------------------------------------------------------------------
@app.command("report")
def report_cmd(
    db: Path = typer.Option(..., "--db", help="The DuckDB store to report on (opened read-only)."),
    out: Path = typer.Option(..., "--out", help="Directory for report.html, report.md, the plots and comparison.csv/.md."),
    title: str = typer.Option("gdig report", "--title", help="Title of the page."),
) -> None:
    """Write an HTML + markdown report: influence histograms, helped fraction, clusters, sketch
    projection, metric vs budget and the comparison table (missing sections say so)."""
    import time

    from gdig.report import write_report
    from gdig.store import Store, StoreError

    if not db.exists():
        fail(f"{db}: no gdig store here", 2)
    try:
        with Store(db, read_only=True) as store:
            header = {"date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                      "command": f"gdig report --db {db} --out {out}", "store": str(db.resolve())}
            paths = write_report(store, out, title=title, header=header)
    except StoreError as err:
        fail(str(err), 2)
    typer.echo(f"report: {paths['html']}\nmarkdown: {paths['markdown']}\ntable: {paths['comparison_csv']}")


if __name__ == "__main__":  # pragma: no cover
    app(sys.argv[1:])
