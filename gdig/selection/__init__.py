"""Steps 5-6 of G-DIG: the Eq. 4 quality filter, gradient clustering + even resampling, baselines.

    select(strategy, budget, influence, sketches, ...)  -> Selection   (pure: DataFrames + numpy)
    outputs.run_selection(store, scoring_id, strategy, budget, sel_cfg) -> (selection_id, Selection)
    outputs.export_selection(store, selection_id, path)  -> JSONL in the input schema + scores
    explain.explain(store, scoring_id, example_id, k)     -> seeds a candidate helps / hurts most
    summary.build_summary(...)                           -> SelectSummary (counts, coverage, noise)
"""

from gdig.selection.select import STRATEGIES, Selection, select

__all__ = ["STRATEGIES", "Selection", "select"]
