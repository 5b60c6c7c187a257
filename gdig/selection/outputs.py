"""Selections in and out of the store: ids, store writes, JSONL export.

selection_id = content hash of (scoring_id, strategy, budget, the selection settings that
change the result), so re-running an unchanged selection rewrites the same rows.  The
clustering a selection used is stored under the same id (clusters.clustering_id).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from gdig.selection.allocation import allocation_of
from gdig.selection.rules import HQ_RULES, rejected_names
from gdig.selection.select import Selection, SelectSettings, select, strategy_of
from gdig.workspace import atomic_file, json_hash


def strategy_settings(strategy: str, sel_cfg) -> dict:
    """The settings of sel_cfg (a gdig.config.SelectionConfig) that `strategy` reads: a change to
    any other leaves its id (and result) alone."""
    settings = {k: getattr(sel_cfg, k) for k in strategy_of(strategy).reads}
    if "hq_multiple" in settings and settings["gamma"] != "auto":
        settings.pop("hq_multiple")  # only "auto" reads it
    if "drop_margin" in settings and not allocation_of(settings["allocation"]).reads_drop_margin:
        settings.pop("drop_margin")
    for key, rule in HQ_RULES.items():
        if key in settings and settings[key] is None and not rule.in_id_when_off:
            settings.pop(key)  # off: the ids of selections made before the rule existed stay
    return settings


def selection_id(scoring_id: str, strategy: str, budget: int, sel_cfg) -> str:
    """Content hash of (scoring, strategy, budget, the settings the strategy reads): budgets and
    strategies lists excluded, so adding a budget leaves the others' ids alone, and a γ change
    leaves random / diversity / loss selections as they are."""
    key = {"scoring_id": scoring_id, "strategy": strategy, "budget": int(budget),
           **strategy_settings(strategy, sel_cfg)}
    return f"{strategy}-{budget}-" + json_hash(key, 12)


def with_source_free(store, influence: pd.DataFrame, source_free: dict | None) -> pd.DataFrame:
    """The influence frame with column source_free_loss (NaN where not stored) when the
    source-free-loss stage ran (`source_free`: its result), else as it is."""
    if source_free is None:
        return influence
    losses = store.source_free_losses(source_free["checkpoint_id"], source_free["prompt_key"])
    return influence.assign(source_free_loss=influence["example_id"].map(losses).astype(np.float64))


def load_pool(store, scoring_id: str, need_sketches: bool, source_free: dict | None = None
              ) -> tuple[pd.DataFrame, np.ndarray | None]:
    """(influence aggregates in pool order (with source_free_loss given `source_free`), sketches
    aligned with them or None)."""
    influence = with_source_free(store, store.influence(scoring_id), source_free)
    if len(influence) == 0:
        raise ValueError(f"scoring {scoring_id!r} has no influence rows")
    if not need_sketches:
        return influence, None
    ids, X = store.sketches(scoring_id)
    if len(ids) != len(influence) or list(ids) != list(influence["example_id"]):
        raise ValueError(
            f"scoring {scoring_id!r} has sketches for {len(ids)} of {len(influence)} candidates; "
            "the gdig and diversity strategies need one per candidate (influence.scoring.sketch: true)"
        )
    return influence, X


def run_selection(store, scoring_id: str, strategy: str, budget: int, sel_cfg,
                  source_free: dict | None = None) -> tuple[str, Selection]:
    """Select with the config's settings and write clusters + selection rows to the store
    (`source_free`: the source-free-loss stage's result, which the source-gain rule reads)."""
    entry, settings = strategy_of(strategy), SelectSettings.from_config(sel_cfg)
    waiting = [k for k, t in settings.rules.items() if t is not None and HQ_RULES[k].reads == "source_free_loss"]
    if entry.reads_quality and waiting and source_free is None:
        raise ValueError(f"selection.{waiting[0]} is set but the source-free-loss stage did not run")
    influence, X = load_pool(store, scoring_id, entry.needs_sketches, source_free)
    n_groups = int(store.get_scoring(scoring_id)["n_seeds"] or 0)
    sel = select(strategy, budget, influence, X, settings, n_seed_groups=n_groups)
    sid = selection_id(scoring_id, strategy, sel.budget, sel_cfg)
    clusters = sel.cluster_frame()
    if clusters is not None:
        store.add_clusters(sid, scoring_id, clusters)
    settings = {**strategy_settings(strategy, sel_cfg), "gamma_used": sel.gamma, "n_high_quality": sel.n_high_quality,
                **{count: sel.rejected.get(count) for count in rejected_names()},
                "n_clusters_used": None if sel.clustering is None else sel.clustering.n_clusters}
    store.add_selection(sid, strategy=strategy, budget=sel.budget, df=sel.rows, scoring_id=scoring_id,
                        settings=settings)
    return sid, sel


def _clean(v):
    """JSON-safe scalar: NaN/NA -> null, numpy -> python."""
    if v is None or v is pd.NA:
        return None
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return None if math.isnan(v) else float(v)
    return v


def export_selection(store, sel_id: str, path: str | Path) -> Path:
    """Write a selection as JSONL in the input schema (src, tgt, src_lang, tgt_lang) plus score
    fields (helped_fraction, mean_influence, cluster, rank, reason, example_id, and label when
    the pool row carries a noise label).  `gdig ingest` reads it back (extra fields are ignored)."""
    rows = store.selection(sel_id)
    if len(rows) == 0:
        raise ValueError(f"no selection {sel_id!r} in the store")
    scoring_id = None
    meta = store.selections()
    match = meta[meta["selection_id"] == sel_id]
    if len(match):
        scoring_id = match["scoring_id"].iloc[0]
    if scoring_id is not None and not pd.isna(scoring_id):
        infl = store.influence(scoring_id, list(rows["example_id"])).set_index("example_id")
        rows = rows.join(infl[["helped_fraction", "mean", "label"]], on="example_id")
    else:
        rows = rows.assign(helped_fraction=np.nan, mean=np.nan, label=None)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, "export", seal=False) as tmp, tmp.open("w", encoding="utf-8") as f:
        for r in rows.itertuples(index=False):
            rec = {
                "src": r.src, "tgt": r.tgt, "src_lang": r.src_lang, "tgt_lang": r.tgt_lang,
                "example_id": r.example_id, "rank": _clean(r.rank), "reason": r.reason,
                "cluster": _clean(r.cluster), "helped_fraction": _clean(r.helped_fraction),
                "mean_influence": _clean(r.mean),
            }
            label = _clean(r.label)
            if label is not None:
                rec["label"] = label
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return path
