"""The prefilter over the store: verdicts for every row of the pool (which decide
what is scored and selected) and for the seed and eval sets (reported only, never changed).

Verdicts are stored under a signature of the rules' settings and the language pair, so an
unchanged prefilter is never recomputed and a changed threshold recomputes only the verdicts
(seconds): the pool checkpoint and the curvature never depend on them, and scoring reuses every
row already scored (see gdig.stages.influence.score_shard).
"""

from __future__ import annotations

import pandas as pd

from gdig.prefilter.bounds import RatioBounds
from gdig.prefilter.decisions import prefilter_rows, prefilter_signature, ratio_bounds_of, rule_counts
from gdig.prefilter.rules import LEARNED


def _judge(cfg, store, dataset: str, ratio_bounds: RatioBounds | None = None) -> tuple[dict, RatioBounds | None]:
    ds = store.get_dataset(dataset)
    if ds is None:
        raise ValueError(f"prefilter: no dataset {dataset!r} in the store; ingest it first")
    sig = prefilter_signature(cfg.prefilter, ds["src_lang"], ds["tgt_lang"], ratio_bounds)
    rows = store.dataset_examples(dataset)
    if sig in store.prefilter_signatures(dataset):
        decisions = store.prefilter(dataset, sig)
        if len(decisions) == len(rows):
            return _report(dataset, sig, decisions)
    decisions = prefilter_rows(rows, cfg.prefilter, ds["src_lang"], ds["tgt_lang"], ratio_bounds)
    store.add_prefilter(dataset, sig, decisions)
    return _report(dataset, sig, decisions)


def _report(dataset: str, sig: str, decisions: pd.DataFrame) -> tuple[dict, RatioBounds | None]:
    if "figures" in decisions:  # read back from the store: the figures as one dict per row
        decisions = decisions.assign(**{k: [f.get(k, float("nan")) for f in decisions["figures"]]
                                        for k in LEARNED})
    bounds = ratio_bounds_of(decisions)
    report = {"dataset": dataset, "signature": sig, "n_rows": len(decisions),
              "n_passed": int(decisions["passed"].sum()),
              "rejected": {str(k): int(v) for k, v in rule_counts(decisions).items()},
              "ratio_bounds": None if bounds is None else bounds.as_dict()}
    return report, bounds


def judge_datasets(cfg, store, pool: str = "pool", checked: list[str] | tuple[str, ...] = ()) -> dict:
    """Verdicts for `pool` (what scoring and selection draw from) and the `checked` datasets
    (seed, eval: reported only), these judged by the length ratio learned from the pool.
    Returns {dataset: {signature, n_rows, n_passed, rejected, ratio_bounds}}."""
    out, bounds = {}, None
    out[pool], bounds = _judge(cfg, store, pool)
    for name in checked:
        out[name], _ = _judge(cfg, store, name, bounds)
    return out


def passing_ids(cfg, store, dataset: str = "pool") -> set[str] | None:
    """Example ids of the dataset that pass the prefilter (None: prefilter disabled, all pass)."""
    if not cfg.prefilter.enabled:
        return None
    ds = store.get_dataset(dataset)
    sig = prefilter_signature(cfg.prefilter, ds["src_lang"], ds["tgt_lang"])
    n_verdicts, passed = store.prefilter_passed(dataset, sig)  # no figures: a large pool's stay in the store
    if n_verdicts != len(store.dataset_ids(dataset)):
        raise ValueError(f"prefilter verdicts for {dataset!r} are missing or stale; run the prefilter stage first")
    return set(passed)
