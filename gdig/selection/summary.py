"""What a `gdig select` run produced, computed from the store alone (so any step can rebuild it).

Cluster coverage: each budget's G-DIG clustering (K-means over the sketches of D_hq) is
extended to the whole pool by nearest centroid; a selection covers the clusters its rows
fall in.  This lets random / quality-only / diversity-only selections be compared on the
same partition.  Noise figures appear when the pool carries noise labels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from gdig.selection.diversity import _prepare, nearest_centroid
from gdig.selection.metrics import auroc, has_noise_labels, is_noisy, noise_removal
from gdig.selection.quality import quality_key, quality_score
from gdig.selection.rules import checked, clauses, rejected_names

# each D_hq rule's clause in the summary, by rule key ({n}: candidates it ranks last, {t}: its threshold)
SUMMARY_CLAUSES = {
    "closing_loss_max": "{n} candidates with a closing-token loss above {t:g} nats ranked last",
    "source_gain_min": "{n} candidates gaining less than {t:g} nats per target token from the source ranked last",
}


@dataclass
class SelectionReport:
    strategy: str
    budget: int
    selection_id: str
    size: int
    counts: dict[str, int]  # reason -> rows (quality / filled / random / diversity / full)
    n_clusters: int | None = None  # clusters of this selection's own clustering
    clusters_covered: int | None = None  # of the G-DIG clustering at this budget
    clusters_total: int | None = None
    cluster_evenness: float | None = None  # entropy of its rows over those clusters / log(K); 1 = even
    gamma: float | None = None  # the γ used (gdig, quality)
    n_high_quality: int | None = None  # |D_hq| at that γ
    export_path: str | None = None
    noise: dict | None = None  # metrics.noise_removal(...)
    rejected: dict[str, int] = field(default_factory=dict)  # per D_hq rule that is on: ranked last (gdig, quality)

    def __getattr__(self, name: str):
        if name in rejected_names():  # n_closing_rejected, ...: None while the rule is off
            return self.__dict__.get("rejected", {}).get(name)
        raise AttributeError(name)


@dataclass
class SelectSummary:
    scoring_id: str
    pool_size: int
    n_seeds: int
    gamma: float | str  # the setting (a number or "auto"; the γ used is per selection)
    n_high_quality: int | None  # |D_hq| of the first gdig/quality selection (per selection below)
    selections: list[SelectionReport] = field(default_factory=list)
    auroc: dict[str, float] | None = None  # score -> AUROC of clean (positive) vs noisy
    noise_types: dict[str, int] | None = None  # noise type -> rows in the pool
    warnings: list[str] = field(default_factory=list)
    datasets: dict[str, dict] = field(default_factory=dict)  # name -> rows, duplicates, rejected (ingest)
    prefilter: dict[str, dict] = field(default_factory=dict)  # name -> n_rows, n_passed, rejected per rule
    rules: dict[str, float | None] = field(default_factory=dict)  # D_hq rule -> threshold (None: off)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SelectSummary":
        """The summary back from to_dict() (what a stage returns and a Prefect result keeps)."""
        return cls(**{**d, "selections": [SelectionReport(**r) for r in d.get("selections", [])]})

    def render(self) -> str:
        lines = []
        if self.datasets:  # nothing dropped silently: what ingest kept once or rejected, per dataset
            lines.append("datasets: " + "; ".join(
                f"{n} {d['rows']} rows ({d['duplicates']} exact duplicates kept once, {d['rejected']} rejected)"
                for n, d in self.datasets.items()))
        for name, p in self.prefilter.items():
            rules = ", ".join(f"{k} {v}" for k, v in p["rejected"].items()) or "none"
            what = "scored and selectable" if name == "pool" else "reported only, the set is used as it is"
            lines.append(f"prefilter {name}: {p['n_passed']} of {p['n_rows']} pass ({what}); rejected per rule: {rules}")
        lines.append(f"scoring {self.scoring_id}: pool {self.pool_size} candidates x {self.n_seeds} seed groups")
        seen = set()
        for r in self.selections:
            if r.gamma is None or (r.budget, r.gamma) in seen:
                continue
            seen.add((r.budget, r.gamma))
            lines.append(f"budget {r.budget}: high-quality (helped fraction >= gamma {r.gamma:.4g}"
                         f"{', auto' if self.gamma == 'auto' else ''}): |D_hq| = {r.n_high_quality}"
                         f" ({r.n_high_quality / max(self.pool_size, 1):.1%} of the pool)"
                         + "".join(f"; {c}" for c in clauses(SUMMARY_CLAUSES, self.rules, r.rejected)))
        if self.noise_types:
            n_noisy = sum(self.noise_types.values())
            kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.noise_types.items()))
            lines.append(f"noise labels: {n_noisy} noisy of {self.pool_size} ({kinds})")
        if self.auroc:
            lines.append("AUROC clean vs noisy: " + ", ".join(f"{k} {v:.3f}" for k, v in self.auroc.items()))
        lines.append("")
        header = f"{'strategy':<10} {'budget':>7} {'size':>7}  {'reasons':<26} {'clusters':>9} {'even':>5}"
        if self.noise_types:
            header += f" {'clean%':>7} {'rm-prec':>8} {'rm-rec':>7}  per-type removal rate"
        lines.append(header)
        for r in self.selections:
            reasons = ", ".join(f"{k} {v}" for k, v in sorted(r.counts.items()))
            cov = "" if r.clusters_covered is None else f"{r.clusters_covered}/{r.clusters_total}"
            even = "" if r.cluster_evenness is None else f"{r.cluster_evenness:.2f}"
            line = f"{r.strategy:<10} {r.budget:>7} {r.size:>7}  {reasons:<26} {cov:>9} {even:>5}"
            if r.noise:
                nz = r.noise
                per = ", ".join(f"{k} {v['removal_rate']:.2f}" for k, v in sorted(nz["per_type"].items()))
                line += (f" {nz['selected_clean_fraction']:>7.1%} {nz['removal_precision']:>8.3f}"
                         f" {nz['removal_recall']:>7.3f}  {per}")
            lines.append(line.rstrip())
        if any(r.export_path for r in self.selections):
            lines.append("")
            lines += [f"exported {r.strategy}-{r.budget}: {r.export_path}" for r in self.selections if r.export_path]
        if any(r.clusters_total for r in self.selections):
            lines.append("")
            lines.append("clusters: covered / K of the G-DIG clustering at that budget (K-means of D_hq, "
                         "pool assigned by nearest centroid); even: entropy of the rows over them / log K")
        if self.warnings:
            lines.append("")
            lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def _centroids(X: np.ndarray, labels: np.ndarray, normalize: bool) -> np.ndarray:
    Z = _prepare(X, normalize)
    return np.stack([Z[labels == k].mean(0) for k in np.unique(labels)])


def evenness(labels: np.ndarray, k: int) -> float | None:
    """Normalised Shannon entropy of a cluster histogram: 1.0 = every cluster equally used,
    0.0 = one cluster.  None when there is nothing to compare (k < 2 or no rows)."""
    if k < 2 or len(labels) == 0:
        return None
    p = np.bincount(labels, minlength=k) / len(labels)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum() / np.log(k))


def build_summary(
    store, scoring_id: str, selection_ids: list[str], *, gamma: float | str, normalize: bool,
    exports: dict[str, str] | None = None, warnings: list[str] | None = None, quality: str = "paper",
    prefilter: dict[str, dict] | None = None, rules: dict[str, float | None] | None = None,
) -> SelectSummary:
    scoring = store.get_scoring(scoring_id)
    influence = store.influence(scoring_id)
    summary = SelectSummary(
        scoring_id=scoring_id, pool_size=len(influence), n_seeds=int(scoring["n_seeds"] or 0),
        gamma=gamma, n_high_quality=None, warnings=list(warnings or []),
        datasets={str(r.name): {"rows": int(r.n_rows), "duplicates": int(r.n_duplicates), "rejected": int(r.n_rejected)}
                  for r in store.datasets().itertuples()},
        prefilter=dict(prefilter or {}), rules=checked(rules),
    )
    labels = influence["label"].to_numpy()
    noisy = is_noisy(labels) if has_noise_labels(labels) else None
    if noisy is not None:
        _add_noise_separation(summary, influence, labels, noisy, quality)

    meta = store.selections().set_index("selection_id")
    partition, sk_pos = _gdig_partitions(store, scoring_id, selection_ids, meta, len(influence), normalize)
    pos_of = {e: i for i, e in enumerate(influence["example_id"])}
    for sid in selection_ids:
        picked = store.selection(sid)
        rep = _selection_report(store, sid, picked, meta, (exports or {}).get(sid))
        if rep.n_high_quality is not None and summary.n_high_quality is None:
            summary.n_high_quality = rep.n_high_quality
        if rep.budget in partition:
            part, k = partition[rep.budget]
            at = part[[sk_pos[e] for e in picked["example_id"]]]
            rep.clusters_covered, rep.clusters_total, rep.cluster_evenness = int(len(np.unique(at))), k, evenness(at, k)
        if noisy is not None:
            mask = np.zeros(len(influence), dtype=bool)
            mask[[pos_of[e] for e in picked["example_id"]]] = True
            rep.noise = noise_removal(labels, mask)
        summary.selections.append(rep)
    return summary


def _add_noise_separation(summary: SelectSummary, influence: pd.DataFrame, labels: np.ndarray, noisy: np.ndarray,
                          quality: str) -> None:
    """The noise types of the pool and, when it has clean rows too, how well each score ranks
    clean above noisy (AUROC)."""
    summary.noise_types = pd.Series(labels[noisy]).value_counts().sort_index().to_dict()
    if not (~noisy).any():
        return
    clean = ~noisy
    summary.auroc = {
        "quality": auroc(quality_key(influence), clean),
        "helped_fraction": auroc(influence["helped_fraction"], clean),
        "-mean_influence": auroc(-influence["mean"].to_numpy(), clean),
        "-loss": auroc(-influence["loss"].to_numpy(), clean),
    }
    if "closing_loss" in influence and influence["closing_loss"].notna().all():
        summary.auroc["-closing_loss"] = auroc(-influence["closing_loss"].to_numpy(), clean)
    if quality != "paper":
        summary.auroc[f"quality:{quality}"] = auroc(quality_score(influence, quality), clean)


def _gdig_partitions(store, scoring_id: str, selection_ids: list[str], meta: pd.DataFrame, pool_size: int,
                     normalize: bool) -> tuple[dict[int, tuple[np.ndarray, int]], dict[str, int]]:
    """The G-DIG clustering of each budget extended to the whole pool by nearest centroid:
    budget -> (cluster of every sketch row, K); and example id -> sketch row.  Empty without
    one sketch per pool row."""
    sk_ids, X = store.sketches(scoring_id)
    partition: dict[int, tuple[np.ndarray, int]] = {}
    if len(sk_ids) != pool_size:
        return partition, {}
    sk_pos = {e: i for i, e in enumerate(sk_ids)}
    for sid in selection_ids:
        if meta.loc[sid, "strategy"] != "gdig":
            continue
        cl = store.clusters(sid)
        if len(cl) == 0:
            continue
        members = np.array([sk_pos[e] for e in cl["example_id"]])
        C = _centroids(X[members], cl["cluster"].to_numpy(), normalize)
        partition[int(meta.loc[sid, "budget"])] = (nearest_centroid(X, C, normalize), len(C))
    return partition, sk_pos


def _selection_report(store, sid: str, df: pd.DataFrame, meta: pd.DataFrame,
                      export_path: str | None) -> SelectionReport:
    """One selection (its rows `df`): size, reasons, the γ used and |D_hq|, its own clusters."""
    import json

    rep = SelectionReport(
        strategy=str(meta.loc[sid, "strategy"]), budget=int(meta.loc[sid, "budget"]), selection_id=sid,
        size=len(df), counts={str(k): int(v) for k, v in df["reason"].value_counts().items()},
        export_path=export_path,
    )
    settings = meta.loc[sid, "settings"] if "settings" in meta else None
    if isinstance(settings, str):
        settings = json.loads(settings)
    if settings and settings.get("gamma_used") is not None:
        rep.gamma, rep.n_high_quality = float(settings["gamma_used"]), settings.get("n_high_quality")
        rep.rejected = {c: settings[c] for c in rejected_names() if settings.get(c) is not None}
    own = store.clusters(sid)
    if len(own):
        rep.n_clusters = int(own["cluster"].nunique())
    return rep
