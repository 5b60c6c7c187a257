"""`gdig select` as plain Python: ingest -> pool checkpoint -> curvature -> seed products ->
sharded scoring -> merge -> (strategy x budget) selection + export -> summary.

Each step is one small named function whose arguments are the config, the store and
ids/paths, and whose result is an id or a path, so the Prefect tasks in tasks/ can wrap
them one-to-one.  `select_pipeline` chains them in one process without any server.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tqdm.auto import tqdm

from gdig.selection.summary import SelectSummary

log = logging.getLogger(__name__)


# -- steps 0-3: data, model, curvature, seed side ----------------------------------------------
def ingest_step(cfg, store, progress: bool = True) -> dict[str, list[str]]:
    """Load data.candidates into "pool" and data.seed into "seed" (idempotent); both must be
    given (ConfigError), and each dataset holds exactly what the config names."""
    from gdig.config import require_data
    from gdig.data.ingest import ingest_config

    return ingest_config(require_data(cfg), store, progress=progress)


def checkpoint_step(cfg, store, progress: bool = True) -> dict:
    """Step 1: {"checkpoint_id", "path"} of the model on the pool (finetuned, given, or the base)."""
    from gdig.train import pool_checkpoint_stage

    return pool_checkpoint_stage(cfg, store, progress=progress)


def curvature_step(cfg, store, checkpoint_path: str, checkpoint_id: str, progress: bool = True) -> str:
    """Step 2: K-FAC / EK-FAC factors; returns the curvature_id."""
    from gdig.influence.stages import fit_curvature_stage

    return fit_curvature_stage(cfg, store, checkpoint_path, checkpoint_id, progress=progress)


def seed_products_step(cfg, store, checkpoint_path: str, checkpoint_id: str, curvature_id: str,
                       progress: bool = True) -> str:
    """Step 3: inverse-Hessian products of the seed gradients; returns the products file path."""
    from gdig.influence.stages import seed_products_stage

    return seed_products_stage(cfg, store, checkpoint_path, checkpoint_id, curvature_id, progress=progress)


# -- step 4: scoring in shards ------------------------------------------------------------------
def shard_plan(cfg, store) -> list[tuple[int, int]]:
    """[start, end) row ranges of the pool, influence.scoring.shard_size rows each."""
    from gdig.influence.stages import pool_rows, shard_ranges

    return [tuple(r) for r in shard_ranges(len(pool_rows(store)), cfg.influence.scoring.shard_size)]


def shard_path(cfg, curvature_id: str, products_path: str, start: int, end: int) -> str:
    """Where the scores of pool rows [start, end) go; the name carries everything they depend on.

    The products file is named by its products id, a content hash of (curvature, checkpoint,
    seed examples, influence + prompt config), so its stem identifies the products without
    re-reading a possibly large file.
    """
    return str(Path(cfg.workspace.dir) / "scores" / "shards"
               / f"{curvature_id}-{Path(products_path).stem}-{start}-{end}.parquet")


def score_shard_step(cfg, checkpoint_path: str, products_path: str, rows_df, out_path: str,
                     progress: bool = True) -> str:
    """Score one shard of candidates (rows_df = pool_rows(store)[start:end]) into out_path.

    A shard already on disk is reused.  The engine writes to a temporary name first and the
    file is renamed when complete, so a crash never leaves a partial shard under out_path.
    """
    from gdig.influence.stages import score_shard_stage

    out = Path(out_path)
    if out.exists() and _shard_matches(out, rows_df):
        return str(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".partial.parquet")
    written = Path(score_shard_stage(cfg, checkpoint_path, products_path, rows_df, str(tmp), progress=progress))
    written.replace(out)
    return str(out)


def _shard_matches(path: Path, rows_df) -> bool:
    """A shard on disk is reused only if it holds these rows: every (id, position) it has is one of
    them (rows the engine skipped as too long are legitimately absent)."""
    import pyarrow.parquet as pq

    try:
        t = pq.read_table(path, columns=["example_id", "position"])
    except Exception:  # unreadable (e.g. truncated by a crash outside the engine): recompute
        return False
    wanted = set(zip(map(str, rows_df["example_id"]), map(int, rows_df["position"])))
    have = list(zip(t.column("example_id").to_pylist(), t.column("position").to_pylist()))
    return bool(have or not wanted) and all(pair in wanted for pair in have)


def merge_step(cfg, store, shard_paths: list[str], curvature_id: str, products_path: str) -> str:
    """Load the shards into the store (aggregates, sketches, matrix); returns the scoring_id."""
    from gdig.influence.stages import merge_scores_stage

    return merge_scores_stage(cfg, store, list(shard_paths), curvature_id, products_path)


def score_all_step(cfg, store, checkpoint_path: str, curvature_id: str, products_path: str,
                   progress: bool = True) -> list[str]:
    """Every shard in this process, one after the other (the flows run them as parallel tasks)."""
    from gdig.influence.stages import pool_rows

    rows = pool_rows(store)
    paths = []
    plan = shard_plan(cfg, store)
    for start, end in tqdm(plan, desc="score shards", disable=not progress or len(plan) < 2):
        path = shard_path(cfg, curvature_id, products_path, start, end)
        paths.append(score_shard_step(cfg, checkpoint_path, products_path,
                                      rows.iloc[start:end].reset_index(drop=True), path, progress=progress))
    return paths


# -- steps 5-6: selection -----------------------------------------------------------------------
def selection_jobs(cfg) -> list[tuple[str, int]]:
    """(strategy, budget) pairs to run; "full" ignores the budget, so it runs once."""
    jobs = []
    for strategy in cfg.selection.strategies:
        budgets = cfg.selection.budgets[:1] if strategy == "full" else cfg.selection.budgets
        jobs += [(strategy, int(b)) for b in budgets]
    return list(dict.fromkeys(jobs))


def quality_step(cfg, store, scoring_id: str) -> dict:
    """Step 5 at a glance: the γ used and |D_hq| per budget (the selections recompute them)."""
    from gdig.selection.quality import GAMMA_TOL, auto_gamma, hq_target

    infl = store.influence(scoring_id)
    hf = infl["helped_fraction"].to_numpy()
    groups = int(store.get_scoring(scoring_id)["n_seeds"] or 0)
    sel = cfg.selection
    per_budget = {}
    for b in sel.budgets:
        g = float(sel.gamma) if sel.gamma != "auto" else auto_gamma(hf, groups, hq_target(b, sel.hq_multiple))
        per_budget[int(b)] = {"gamma": g, "n_high_quality": int((hf >= g - GAMMA_TOL).sum())}
    return {"pool_size": len(infl), "per_budget": per_budget}


def selection_step(cfg, store, scoring_id: str, strategy: str, budget: int) -> str:
    """Select, write clusters + selection rows; returns the selection_id."""
    from gdig.selection.outputs import run_selection

    sid, sel = run_selection(store, scoring_id, strategy, budget, cfg.selection)
    for w in sel.warnings:
        log.warning("%s-%s: %s", strategy, budget, w)
    return sid


def export_step(cfg, store, selection_id: str) -> str:
    """{workspace.dir}/selections/{selection_id}.jsonl (the id is strategy-budget-<hash of the
    settings it read>, so a γ sweep keeps one file per γ); returns its path."""
    from gdig.selection.outputs import export_selection

    meta = store.selections()
    if not (meta["selection_id"] == selection_id).any():
        raise ValueError(f"no selection {selection_id!r} in {store.path}")
    return str(export_selection(store, selection_id, Path(cfg.workspace.dir) / "selections" / f"{selection_id}.jsonl"))


def summary_step(cfg, store, scoring_id: str, selection_ids: list[str],
                 exports: dict[str, str] | None = None) -> SelectSummary:
    from gdig.selection.summary import build_summary

    summary = build_summary(store, scoring_id, list(selection_ids), gamma=cfg.selection.gamma,
                            normalize=cfg.selection.normalize, exports=exports, quality=cfg.selection.quality)
    short = sorted({(r.budget, r.gamma, r.n_high_quality) for r in summary.selections
                    if r.n_high_quality is not None and r.n_high_quality < r.budget})
    for budget, gamma, n_hq in short:  # said once per budget, not once per strategy
        summary.warnings.append(f"|D_hq| = {n_hq} at gamma {gamma:g} is below budget {budget}: gdig/quality "
                                f"selections were filled from the next-ranked candidates (reason 'filled'); "
                                f"consider a lower selection.gamma or 'auto'")
    return summary


# -- the whole thing -------------------------------------------------------------------------------
def select_pipeline(cfg, store=None, progress: bool = True) -> SelectSummary:
    """Run every step of `gdig select` in this process; opens cfg.workspace.db unless given a store."""
    if store is None:
        from gdig.store import Store

        with Store(cfg.workspace.db) as own:
            return select_pipeline(cfg, own, progress)
    ingest_step(cfg, store, progress)
    ckpt = checkpoint_step(cfg, store, progress)
    curvature_id = curvature_step(cfg, store, ckpt["path"], ckpt["checkpoint_id"], progress)
    products = seed_products_step(cfg, store, ckpt["path"], ckpt["checkpoint_id"], curvature_id, progress)
    shards = score_all_step(cfg, store, ckpt["path"], curvature_id, products, progress)
    scoring_id = merge_step(cfg, store, shards, curvature_id, products)
    ids, exports = [], {}
    for strategy, budget in tqdm(selection_jobs(cfg), desc="select", disable=not progress):
        sid = selection_step(cfg, store, scoring_id, strategy, budget)
        exports[sid] = export_step(cfg, store, sid)
        ids.append(sid)
    return summary_step(cfg, store, scoring_id, ids, exports)


# -- gdig run: selection + its proof (finetune, translate, score, report) -----------------------
# (appended by the finetuning/evaluation helper; uses gdig.train, gdig.evaluate, gdig.report)
from dataclasses import dataclass, field  # noqa: E402


@dataclass
class RunJob:
    strategy: str
    budget: int
    selection_id: str
    steps: int  # optimizer steps: steps_for_budget(budget), equal for every strategy of a budget
    checkpoint_id: str = ""
    checkpoint_path: str = ""
    metrics: dict = field(default_factory=dict)  # eval set -> metrics_stage result


@dataclass
class RunSummary:
    select: SelectSummary
    eval_sets: list[str]
    jobs: list[RunJob]
    table: object  # pandas DataFrame: gdig.evaluate.comparison_table
    paths: dict[str, str]  # report / comparison files
    timings: dict[str, float]  # stage -> wall seconds (summed over jobs)
    warnings: list[str] = field(default_factory=list)
    base_metrics: dict = field(default_factory=dict)  # eval set -> metrics of the base model (no finetuning)

    def render(self) -> str:
        from gdig.evaluate import comparison_markdown

        lines = [self.select.render(), "", "Comparison (rows: strategy; columns: metric@budget):", ""]
        lines.append(comparison_markdown(self.table).rstrip())
        for ev, m in self.base_metrics.items():
            lines.append(f"base model before finetuning, {ev}: BLEU {m['BLEU']:.2f}, chrF {m['chrF']:.2f}")
        lines.append("")
        lines.append("wall time: " + ", ".join(f"{k} {v:.1f}s" for k, v in self.timings.items()))
        lines += [f"{k}: {v}" for k, v in self.paths.items() if k in ("html", "comparison_csv", "comparison_markdown")]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def run_pipeline(cfg, store=None, progress: bool = True, evaluate_base: bool = True,
                 header: dict | None = None) -> RunSummary:
    """`gdig run` without Prefect: select_pipeline, then for every strategy x budget finetune the
    BASE model (cfg.model) on the selection for steps_for_budget(budget) optimizer steps, translate
    each eval set, score it (BLEU/chrF/COMET-or-reason), and write the comparison table + report
    to {workspace.dir}/reports/<run>/ (and reports/latest); header: the report's first lines
    (gdig.report.run_header).  Finished checkpoints and complete translations are reused.
    evaluate_base: also score the base model itself (metric rows without a strategy, so they stay
    out of the comparison table; shown in RunSummary.base_metrics)."""
    import time

    from gdig.evaluate import comparison_table, metrics_stage, translate_stage
    from gdig.report import reports_dir, run_header, write_run_report
    from gdig.runinfo import run_stamp
    from gdig.train import finetune_selection_stage, steps_for_budget

    if store is None:
        from gdig.store import Store

        with Store(cfg.workspace.db) as own:
            return run_pipeline(cfg, own, progress, evaluate_base, header)
    timings: dict[str, float] = {}

    def timed(stage: str, fn, *args, **kw):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kw)
        finally:
            timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - t0

    summary = timed("select", select_pipeline, cfg, store, progress)
    eval_sets = ingest_step(cfg, store, progress=False)["eval"]  # a no-op re-ingest that names them
    warnings = [] if eval_sets else ["no data.eval sources: nothing to translate or score"]
    def evaluate(ck, ev, **tags):
        if len(store.translations(ck["checkpoint_id"], ev)) != len(store.dataset_examples(ev)):
            timed("translate", translate_stage, cfg, store, ck, ev, progress)
        return timed("metrics", metrics_stage, cfg, store, ck, ev, **tags)

    base_metrics = {}
    if evaluate_base and eval_sets:
        from gdig.train import base_checkpoint_stage

        base = base_checkpoint_stage(cfg, store)
        base_metrics = {ev: evaluate(base, ev) for ev in eval_sets}
    jobs = []
    for r in summary.selections:
        job = RunJob(r.strategy, int(r.budget), r.selection_id, steps_for_budget(int(r.budget), cfg.finetune))
        ck = timed("finetune", finetune_selection_stage, cfg, store, r.selection_id, job.steps, progress)
        job.checkpoint_id, job.checkpoint_path = ck["checkpoint_id"], ck["path"]
        for ev in eval_sets:
            job.metrics[ev] = evaluate(ck, ev, strategy=r.strategy, budget=int(r.budget),
                                       selection_id=r.selection_id)
        jobs.append(job)
    head = header or run_header(cfg, "gdig run --no-prefect")
    paths = {k: str(v) for k, v in timed("report", write_run_report, store, reports_dir(cfg), run_stamp(), head,
                                         gamma=summary.gamma).items()}
    return RunSummary(summary, eval_sets, jobs, comparison_table(store), paths, timings, warnings, base_metrics)
