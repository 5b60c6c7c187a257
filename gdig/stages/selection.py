"""Stages 5-6: quality (Eq. 4), cluster + resample per strategy x budget, export, summary."""

from __future__ import annotations

import logging

from gdig.stages import StageContext

log = logging.getLogger(__name__)


def selection_jobs(cfg) -> list[tuple[str, int]]:
    """(strategy, budget) pairs to run; a strategy that ignores the budget ("full") runs once."""
    from gdig.selection.select import strategy_of

    jobs = []
    for strategy in cfg.selection.strategies:
        budgets = cfg.selection.budgets if strategy_of(strategy).budgeted else cfg.selection.budgets[:1]
        jobs += [(strategy, int(b)) for b in budgets]
    return list(dict.fromkeys(jobs))


def reads_quality(strategy: str) -> bool:
    """Whether a strategy reads D_hq (γ, the quality score, the D_hq rules): gdig and quality."""
    from gdig.selection.select import strategy_of

    return strategy_of(strategy).reads_quality


def settings_read(cfg, inputs: dict) -> dict:
    """The selection settings a strategy reads (a γ change leaves random, diversity, loss alone)."""
    from gdig.selection.outputs import strategy_settings

    return strategy_settings(inputs["strategy"], cfg.selection)


def quality(ctx: StageContext, scoring: dict, source_free: dict | None = None) -> dict:
    """D_hq per budget at a glance: the γ used, |D_hq| and what each D_hq rule that is on ranks
    last (the selections recompute them); `source_free`: the source-free-loss stage's result
    when the source-gain rule is on."""
    from gdig.selection.outputs import with_source_free
    from gdig.selection.quality import auto_gamma, hq_target, rank_by_quality
    from gdig.selection.rules import passes_rules, rejected_counts, thresholds

    infl = with_source_free(ctx.store, ctx.store.influence(scoring["scoring_id"]), source_free)
    sel, rules = ctx.cfg.selection, thresholds(ctx.cfg.selection)
    hf = infl["helped_fraction"].to_numpy()[passes_rules(infl, rules)]
    groups = int(ctx.store.get_scoring(scoring["scoring_id"])["n_seeds"] or 0)
    per_budget = {}
    for b in sel.budgets:
        g = float(sel.gamma) if sel.gamma != "auto" else auto_gamma(hf, groups, hq_target(b, sel.hq_multiple))
        ranked = rank_by_quality(infl, g, sel.quality, rules)
        per_budget[int(b)] = {"gamma": g, "n_high_quality": int(ranked["high_quality"].sum()),
                              **rejected_counts(ranked, rules)}
    return {"scoring_id": scoring["scoring_id"], "pool_size": len(infl), "per_budget": per_budget}


def cluster_resample(ctx: StageContext, scoring: dict, strategy: str, budget: int,
                     source_free: dict | None = None) -> dict:
    """One selection: K-means over D_hq's sketches, resampling across clusters (or a baseline);
    `source_free` is given to the strategies that read the D_hq rules.  Its key follows the
    settings the strategy reads (settings_read), so only they follow a γ change."""
    from gdig.selection.outputs import run_selection

    sid, sel = run_selection(ctx.store, scoring["scoring_id"], strategy, budget, ctx.cfg.selection, source_free)
    for w in sel.warnings:
        log.warning("%s-%s: %s", strategy, budget, w)
    return {"selection_id": sid, "strategy": strategy, "budget": budget, "size": len(ctx.store.selection(sid))}


def export(ctx: StageContext, selection: dict) -> dict:
    """{workspace.dir}/selections/{selection_id}.jsonl: input schema + score fields (the id is
    strategy-budget-<hash of the settings it read>, so a γ sweep keeps one file per γ)."""
    from gdig.selection.outputs import export_selection

    sid = selection["selection_id"]
    if not (ctx.store.selections()["selection_id"] == sid).any():
        raise ValueError(f"no selection {sid!r} in {ctx.store.path}")
    return {**selection, "path": str(export_selection(ctx.store, sid, ctx.workspace.export(sid)))}


def summarize(ctx: StageContext, scoring: dict, prefilter: dict, exports: list[dict]) -> dict:
    """Pool, D_hq, clusters and per-selection counts (and noise figures when labels exist);
    `prefilter`: the prefilter stage's verdict counts per dataset, reported as they are."""
    from gdig.selection.summary import build_summary

    from gdig.selection.rules import thresholds

    sel = ctx.cfg.selection
    summary = build_summary(ctx.store, scoring["scoring_id"], [e["selection_id"] for e in exports], gamma=sel.gamma,
                            normalize=sel.normalize, exports={e["selection_id"]: e["path"] for e in exports},
                            quality=sel.quality, prefilter=prefilter, rules=thresholds(sel))
    short = sorted({(r.budget, r.gamma, r.n_high_quality) for r in summary.selections
                    if r.n_high_quality is not None and r.n_high_quality < r.budget})
    for budget, gamma, n_hq in short:  # said once per budget, not once per strategy
        summary.warnings.append(f"|D_hq| = {n_hq} at gamma {gamma:g} is below budget {budget}: gdig/quality "
                                f"selections were filled from the next-ranked candidates (reason 'filled'); "
                                f"consider a lower selection.gamma or 'auto'")
    return {"summary": summary.to_dict(), "text": summary.render()}
