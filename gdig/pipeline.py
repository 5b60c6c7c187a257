"""The plain executor: the stage graph (gdig.graph) walked in this process, without Prefect.

`select_pipeline` and `run_pipeline` are what `gdig select|run --no-prefect` run; the Prefect
flows walk the very same graph (gdig_flows/tasks/executor.py), so the two give the same results.  Each
stage gets the store only when it declares it uses one, and its wall time is recorded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from gdig import faults, graph
from gdig.selection.summary import SelectSummary
from gdig.stages import StageContext


class PlainExecutor:
    """Runs each stage the graph walks, at once, in this process; mapped shards one after another."""

    def __init__(self, cfg, store, progress: bool = True, device: str | None = None,
                 run: tuple[str, dict] | None = None):
        self.cfg, self.store, self.progress, self.device, self.run_identity = cfg, store, progress, device, run
        self.timings: dict[str, float] = {}  # stage -> wall seconds, summed over its calls

    def run(self, name: str, **inputs) -> Any:
        spec = graph.stage(name)
        graph.check_call(spec, inputs, mapped=False)
        return self._call(spec, inputs)

    def map(self, name: str, calls: list[dict], what: str | None = None) -> list[Any]:
        spec = graph.stage(name)
        for inputs in calls:
            graph.check_call(spec, inputs, mapped=True)
        shown = self.progress and len(calls) > 1
        return [self._call(spec, inputs) for inputs in tqdm(calls, desc=what or spec.maps, disable=not shown)]

    def _call(self, spec: graph.Stage, inputs: dict) -> Any:
        ctx = StageContext(self.cfg, self.store if spec.uses_store else None, self.progress, self.device,
                           self.run_identity, graph.settings_key(spec, self.cfg), graph.code_keys())
        t0 = time.perf_counter()
        try:
            with faults.stage(spec.name):
                return spec.function()(ctx, **inputs)
        finally:
            self.timings[spec.name] = self.timings.get(spec.name, 0.0) + time.perf_counter() - t0


def run_stage(name: str, cfg, store, progress: bool = True, **inputs) -> Any:
    """One stage in this process, e.g. run_stage("ingest", cfg, store)."""
    return PlainExecutor(cfg, store, progress).run(name, **inputs)


def _with_store(cfg, store, fn):
    """fn(store) while this run holds the workspace (gdig.runlock: a second run fails at once)."""
    from gdig.runlock import exclusive

    with exclusive(cfg):
        if store is not None:
            return fn(store)
        from gdig.store import Store

        with Store(cfg.workspace.db) as own:
            return fn(own)


def select_pipeline(cfg, store=None, progress: bool = True) -> SelectSummary:
    """Every stage of `gdig select` in this process; opens cfg.workspace.db unless given a store."""
    return _with_store(cfg, store, lambda s: SelectSummary.from_dict(
        graph.select(PlainExecutor(cfg, s, progress))["summary"]["summary"]))


# -- gdig run: the selection and its proof ------------------------------------------------------------

@dataclass
class RunJob:
    strategy: str
    budget: int
    selection_id: str
    steps: int  # optimizer steps: steps_for_budget(budget), equal for every strategy of a budget
    checkpoint_id: str = ""
    checkpoint_path: str = ""
    metrics: dict = field(default_factory=dict)  # eval set -> metrics stage result


@dataclass
class RunSummary:
    select: SelectSummary
    eval_sets: list[str]
    jobs: list[RunJob]
    table: object  # pandas DataFrame: gdig.evaluate.comparison_table
    paths: dict[str, str]  # report / comparison files
    timings: dict[str, float]  # stage -> wall seconds (summed over its calls)
    warnings: list[str] = field(default_factory=list)
    base_metrics: dict = field(default_factory=dict)  # eval set -> metrics of the base model (no finetuning)
    result: dict = field(default_factory=dict)  # the graph's result, as the Prefect flow returns it

    def render(self) -> str:
        return render_run(self.result, self.timings)


def run_pipeline(cfg, store=None, progress: bool = True, evaluate_base: bool = True,
                 header: dict | None = None) -> RunSummary:
    """`gdig run` without Prefect: the selection, then for every strategy x budget the BASE model
    (cfg.model) finetuned on the selection for steps_for_budget(budget) optimizer steps, each eval
    set translated and scored (BLEU/chrF/COMET-or-reason), and the comparison table + report in
    {workspace.dir}/reports/<run>/ (and reports/latest); header: the report's first lines
    (gdig.report.run_header).  Finished checkpoints are reused.  evaluate_base: also score the
    base model itself (metric rows without a strategy, shown in RunSummary.base_metrics)."""
    from gdig.report import run_header
    from gdig.runinfo import run_stamp

    def walk(store) -> RunSummary:
        ex = PlainExecutor(cfg, store, progress, run=(run_stamp(), header or run_header(cfg, "gdig run --no-prefect")))
        result = graph.prove(ex, graph.select(ex), evaluate_base)
        return _run_summary(store, result, ex.timings)

    return _with_store(cfg, store, walk)


def _run_summary(store, result: dict, timings: dict[str, float]) -> RunSummary:
    from gdig.evaluate import comparison_table

    eval_sets = [e["name"] for e in result["data"]["eval"]]
    by_model: dict[str, dict] = {}
    for m in result["metrics"]:
        by_model.setdefault(m["checkpoint_id"], {})[m["eval_set"]] = m
    jobs = [RunJob(ck["strategy"], int(ck["budget"]), ck["selection_id"], ck["steps"], ck["checkpoint_id"], ck["path"],
                   by_model.get(ck["checkpoint_id"], {})) for ck in result["models"]]
    table = comparison_table(store, {m["checkpoint_id"] for m in result["metrics"]})
    return RunSummary(SelectSummary.from_dict(result["summary"]["summary"]), eval_sets, jobs, table,
                      dict(result["report"]["paths"]), dict(timings), run_warnings(result),
                      {m["eval_set"]: m for m in result["baseline"]}, result)


def run_warnings(result: dict) -> list[str]:
    return [] if result["data"]["eval"] else ["no data.eval sources: nothing to translate or score"]


def render_run(result: dict, timings: dict[str, float] | None = None) -> str:
    """What `gdig run` prints, either executor: the selection summary, the comparison table, the
    base model's scores, the wall time per stage (plain runs; flows print their task runs),
    where the report is, and warnings."""
    report = result["report"]
    lines = [result["summary"]["text"], "", comparison_text(report["table"], report["notes"])]
    for m in result.get("baseline", []):
        bleu, chrf, nll = m.get("BLEU"), m.get("chrF"), m.get("NLL")
        if bleu is not None and chrf is not None:
            lines.append(f"base model before finetuning, {m['eval_set']}: BLEU {bleu:.2f}, chrF {chrf:.2f}"
                         + (f", NLL {nll:.3f}" if nll is not None else ""))
    if timings:
        lines.append("wall time: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
    lines += [f"{k}: {report['paths'][k]}" for k in ("html", "markdown", "comparison_csv") if k in report["paths"]]
    lines += [f"warning: {w}" for w in run_warnings(result)]
    return "\n".join(lines)


def comparison_text(rows: list[dict], notes: list[str]) -> str:
    import pandas as pd

    if not rows:
        return "no metrics" + "".join(f"\n  {n}" for n in notes)
    df = pd.DataFrame(rows).set_index("strategy")
    text = df.to_string(formatters={c: (lambda v, d=3 if "NLL" in c else 2: "" if pd.isna(v) else f"{v:.{d}f}")
                                    for c in df.columns})
    return text + "".join(f"\n  note: {n}" for n in notes)
