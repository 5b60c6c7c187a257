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


def prefilter_step(cfg, store) -> dict:
    """Step 0: prefilter verdicts for the pool (they decide what is scored and selected) and the
    seed and eval sets (reported only); reused while the rules' settings are unchanged."""
    from gdig.prefilter.stage import prefilter_stage

    if not cfg.prefilter.enabled:  # the paper's pipeline: nothing judged, every row scored
        return {}
    checked = [n for n in store.datasets()["name"] if n != "pool"]
    return prefilter_stage(cfg, store, "pool", checked)


# -- step 4: scoring in shards ------------------------------------------------------------------
def scoring_rows(cfg, store):
    """The pool rows that are scored (and so can be selected): those that pass the prefilter."""
    from gdig.influence.stages import pool_rows
    from gdig.prefilter.stage import passing_ids

    rows = pool_rows(store)
    keep = passing_ids(cfg, store)
    return rows if keep is None else rows[rows["example_id"].isin(keep)].reset_index(drop=True)


def shard_plan(cfg, store) -> list[tuple[int, int]]:
    """[start, end) position ranges of the pool, influence.scoring.shard_size rows each."""
    from gdig.influence.stages import pool_rows, shard_ranges

    return [tuple(r) for r in shard_ranges(len(pool_rows(store)), cfg.influence.scoring.shard_size)]


def shard_rows(rows, start: int, end: int):
    """The scored rows whose pool position is in [start, end)."""
    return rows[(rows["position"] >= start) & (rows["position"] < end)].reset_index(drop=True)


def shard_path(cfg, curvature_id: str, products_path: str, start: int, end: int) -> str:
    """Where the scores of pool rows [start, end) go; the name carries everything they depend on:
    curvature, seed products (the file is named by its content-hash id) and the scoring settings
    (sketch size and seed, contraction path...), so files on disk are reused only for the very
    settings that wrote them."""
    scoring = cfg.section_hash("influence")[:4] + cfg.section_hash("prompt")[:4]
    return str(Path(cfg.workspace.dir) / "scores" / "shards"
               / f"{curvature_id}-{Path(products_path).stem}-{scoring}-{start}-{end}.parquet")


def score_shard_step(cfg, checkpoint_path: str, products_path: str, rows_df, out_path: str,
                     progress: bool = True, device: str | None = None) -> list[str]:
    """Score one shard of candidates (the scored rows of one position range) into out_path;
    returns the shard's files.

    Rows already scored are reused: the file at out_path, plus "delta" files
    ``<stem>+<hash>.parquet`` holding rows that were added to the range later (rows that pass a
    loosened prefilter), so a changed rule scores at most the rows that newly pass.  A file whose
    rows disagree with the pool (another example at a position) is recomputed.  The engine writes
    to a temporary name first and renames it when complete: a crash never leaves a partial file.
    """
    from gdig.influence.stages import _ids_hash

    out = Path(out_path)
    files = _shard_files(out)
    have, skipped = _scored(files)
    wanted = dict(zip(map(int, rows_df["position"]), map(str, rows_df["example_id"])))
    if files is None or any(wanted.get(pos, eid) != eid for eid, pos in have):
        files = []  # unreadable or stale: start over
        out.unlink(missing_ok=True)
        for d in out.parent.glob(f"{out.stem}+*.parquet"):
            d.unlink()
        have, skipped = set(), set()
    done = {pos for _, pos in have}
    missing = rows_df[[p not in done and e not in skipped for p, e in wanted.items()]]
    if files and len(missing) == 0:
        return [str(f) for f in files]
    target = out if not files else out.with_name(f"{out.stem}+{_ids_hash(missing['example_id'])}.parquet")
    _score_into(cfg, checkpoint_path, products_path, missing.reset_index(drop=True), target, progress, device)
    return [str(f) for f in files] + [str(target)]


def _score_into(cfg, checkpoint_path, products_path, rows_df, target: Path, progress, device) -> None:
    from gdig.influence.stages import score_shard_stage

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.stem + ".partial.parquet")
    written = Path(score_shard_stage(cfg, checkpoint_path, products_path, rows_df, str(tmp),
                                     progress=progress, device=device))
    written.replace(target)


def _shard_files(out: Path) -> list[Path] | None:
    """The files of a shard (out_path first, then its deltas); None when one is unreadable."""
    import pyarrow.parquet as pq

    files = ([out] if out.exists() else []) + sorted(out.parent.glob(f"{out.stem}+*.parquet"))
    try:
        for f in files:
            pq.read_schema(f)
    except Exception:  # e.g. truncated by a crash outside the engine: recompute
        return None
    return files


def _scored(files: list[Path] | None) -> tuple[set[tuple[str, int]], set[str]]:
    """(example_id, position) pairs in the files, and the ids the engine skipped as too long."""
    import json

    import pyarrow.parquet as pq

    have, skipped = set(), set()
    for f in files or []:
        t = pq.read_table(f, columns=["example_id", "position"])
        have |= set(zip(t.column("example_id").to_pylist(), t.column("position").to_pylist()))
        meta = t.schema.metadata or {}
        skipped |= set(json.loads(meta.get(b"gdig", b"{}")).get("skipped", []))
    return have, skipped


def merge_step(cfg, store, shard_paths: list, curvature_id: str, products_path: str) -> str:
    """Load the shards' files into the store (aggregates, sketches, matrix), keeping the rows that
    are scored now (a row a tightened prefilter rejects drops out); returns the scoring_id."""
    from gdig.influence.stages import merge_scores_stage

    paths = [p for s in shard_paths for p in ([s] if isinstance(s, str) else s)]
    return merge_scores_stage(cfg, store, paths, curvature_id, products_path,
                              keep=set(scoring_rows(cfg, store)["example_id"]))


def score_all_step(cfg, store, checkpoint_path: str, curvature_id: str, products_path: str,
                   progress: bool = True) -> list[list[str]]:
    """Every shard in this process, one after the other (the flows run them as parallel tasks)."""
    rows = scoring_rows(cfg, store)
    paths = []
    plan = shard_plan(cfg, store)
    for start, end in tqdm(plan, desc="score shards", disable=not progress or len(plan) < 2):
        path = shard_path(cfg, curvature_id, products_path, start, end)
        paths.append(score_shard_step(cfg, checkpoint_path, products_path, shard_rows(rows, start, end), path,
                                      progress=progress))
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
    from gdig.selection.quality import auto_gamma, hq_target, rank_by_quality

    infl = store.influence(scoring_id)
    hf = infl["helped_fraction"].to_numpy()
    groups = int(store.get_scoring(scoring_id)["n_seeds"] or 0)
    sel = cfg.selection
    per_budget = {}
    for b in sel.budgets:
        g = float(sel.gamma) if sel.gamma != "auto" else auto_gamma(hf, groups, hq_target(b, sel.hq_multiple))
        ranked = rank_by_quality(infl, g, sel.quality)
        per_budget[int(b)] = {"gamma": g, "n_high_quality": int(ranked["high_quality"].sum())}
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

    screened = prefilter_step(cfg, store)
    summary = build_summary(store, scoring_id, list(selection_ids), gamma=cfg.selection.gamma,
                            normalize=cfg.selection.normalize, exports=exports, quality=cfg.selection.quality,
                            prefilter=screened)
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
    prefilter_step(cfg, store)
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
