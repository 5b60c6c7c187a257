"""The run report: one HTML page (plots embedded) and a markdown twin, built from the store alone.

Sections: what the run was (date, command, config, workspace), data overview, influence
scores and helped fraction (one density panel per noise type over the clean rows when the pool
has labels, with the 0 / γ line), cluster sizes, a 2-D projection of the gradient sketches by
noise type and by cluster, metric vs budget per strategy with the base model as a line, and
the comparison table.  Every section works on a partial store: what is missing says so and
names the command that fills it.
"""

from __future__ import annotations

import base64
import html
import io
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from gdig.evaluate import comparison_markdown, comparison_table, write_comparison
from gdig.workspace import atomic_file, write_text_atomic

MAX_POINTS = 4000  # points in the projection plot (a seeded subsample of larger pools)


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)  # paragraphs (plain text)
    plot: str | None = None  # png file name in the report dir
    table_md: str | None = None
    table_html: str | None = None


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: Path, name: str) -> str:
    fig.tight_layout()
    with atomic_file(out / name, "report", seal=False) as tmp:
        fig.savefig(tmp, dpi=110, format=Path(name).suffix[1:])
    _plt().close(fig)
    return name


def latest_scoring(store) -> str | None:
    sc = store.table("scorings")
    if len(sc) == 0:
        return None
    return str(sc.sort_values("created_at").iloc[-1]["scoring_id"])


def _labels(df: pd.DataFrame) -> pd.Series:
    return df["label"].where(df["label"].notna(), "clean").astype(str)


# -- sections ---------------------------------------------------------------------------------

def overview_section(store) -> Section:
    s = Section("Data and runs")
    ds = store.datasets()
    if len(ds) == 0:
        s.text.append("No datasets in this store yet (run `gdig ingest` or `gdig select`).")
        return s
    t = ds[["name", "role", "src_lang", "tgt_lang", "n_rows", "n_duplicates", "n_rejected"]]
    sels = store.selections()
    s.table_md = t.to_markdown(index=False)
    s.table_html = t.to_html(index=False, border=0)
    if len(sels):
        st = sels[["strategy", "budget", "size", "selection_id"]]
        s.table_md += "\n\nSelections:\n\n" + st.to_markdown(index=False)
        s.table_html += "<p>Selections:</p>" + st.to_html(index=False, border=0)
    s.text.append(f"{store.count('checkpoints')} checkpoint(s), {store.count('metrics')} metric row(s).")
    model = model_line(store)
    if model:
        s.text.append(model)
    return s


def model_line(store) -> str | None:
    """The base model as loaded: its name, the hub commit it resolved to (or that it is a local
    model, keyed by content) and its identity hash, from the newest base or pool checkpoint."""
    import json

    ck = store.table("checkpoints")
    ck = ck[ck["kind"].isin(["base", "pool"])].sort_values("created_at")
    for meta in reversed(list(ck["meta"])):
        info = json.loads(meta) if isinstance(meta, str) else (meta or {})
        info = info.get("model", info)
        if "model_hash" in info:
            at = f"commit {info['commit']}" if info.get("commit") else "local, keyed by content"
            gguf = f" ({info['gguf_file']})" if info.get("gguf_file") else ""
            return f"Model: {info['name_or_path']}{gguf}, {at}, identity {info['model_hash']}."
    return None


def _type_order(labels: pd.Series) -> list[str]:
    return sorted(labels.unique(), key=lambda x: (x != "clean", x))


def _density_grid(plt, vals: pd.Series, labels: pd.Series, xlabel: str, lines: list[float], line_label: str,
                  lo: float, hi: float, above_label: str | None = None):
    """One small panel per noise type: that type's density over the clean rows' density, so six
    small noise types are not dwarfed by the clean bars; `lines` drawn on every panel (the share
    above is counted at the first)."""
    line = lines[0] if lines else None
    types = [t for t in _type_order(labels) if t != "clean"] or ["clean"]
    ncol = min(3, len(types))
    nrow = -(-len(types) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 2.5 * nrow), squeeze=False, sharex=True)
    bins = np.linspace(lo, hi, 31) if hi > lo else 10
    clean = vals[labels == "clean"]
    for ax, t in zip(axes.flat, types):
        if len(clean) and t != "clean":
            ax.hist(clean, bins=bins, density=True, color="#cccccc", label=f"clean ({len(clean)})")
        sub = vals[labels == t]
        ax.hist(sub, bins=bins, density=True, histtype="step", linewidth=1.8, color="#d62728",
                label=f"{t} ({len(sub)})")
        for x in lines:
            ax.axvline(x, color="black", linestyle="--", linewidth=1)
        title = t
        if above_label and line is not None:
            title += f": {100 * (sub >= line).mean():.0f}% {above_label}" + (
                f" (clean {100 * (clean >= line).mean():.0f}%)" if len(clean) and t != "clean" else "")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(types):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel(xlabel, fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("density", fontsize=8)
    if lines:
        fig.suptitle(f"dashed {'lines' if len(lines) > 1 else 'line'}: {line_label}", fontsize=9)
    return fig


def gammas_used(gamma: float | Mapping[int, float] | None) -> dict[int | None, float]:
    """γ per budget ({budget: γ used}); a single number is one γ for every budget (key None)."""
    if gamma is None:
        return {}
    if isinstance(gamma, Mapping):
        return {b: float(g) for b, g in sorted(gamma.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))}
    return {None: float(gamma)}


def _gamma_label(budget: int | None, g: float) -> str:
    return f"γ = {g:g}" + (f" at budget {budget}" if budget is not None else "")


def influence_section(store, out: Path, scoring_id: str | None,
                      gamma: float | Mapping[int, float] | None = None) -> list[Section]:
    """Histograms of mean influence and of the helped fraction; `gamma`: the γ used, one number or
    {budget: γ used} (gamma: auto chooses one per budget), drawn on the helped-fraction plot."""
    hist, frac = Section("Influence scores"), Section("Helped fraction")
    if scoring_id is None:
        for s in (hist, frac):
            s.text.append("Not available: no influence scores in this store (run `gdig select`).")
        return [hist, frac]
    gammas = gammas_used(gamma)
    lines = sorted(set(gammas.values()))
    line_label = ", ".join(_gamma_label(b, g) for b, g in gammas.items()) + ": right of it is high-quality (Eq. 4)"
    inf = store.influence(scoring_id)
    labels = _labels(inf)
    by_label = labels.nunique() > 1
    plt = _plt()
    mean = inf["mean"].astype(float)
    finite = mean[np.isfinite(mean)]
    lo, hi = (np.percentile(finite, [1, 99]) if len(finite) else (0.0, 1.0))
    hf = inf["helped_fraction"].astype(float)
    for s, vals, xlabel, name, drawn, drawn_label, rng, above in (
        (hist, mean.clip(lo, hi), "mean influence over seeds (negative = helps)", "influence_hist.png",
         [0.0], "0 (left of it: helps on average)", (lo, hi), None),
        (frac, hf, "fraction of seeds helped (I < 0)", "helped_fraction.png", lines, line_label, (0.0, 1.0),
         "at or above γ"),
    ):
        if by_label:
            fig = _density_grid(plt, vals, labels, xlabel, drawn, drawn_label, *rng, above_label=above)
        else:
            fig, ax = plt.subplots(figsize=(7, 3.4))
            ax.hist(vals, bins=np.linspace(*rng, 41) if rng[1] > rng[0] else 10, color="#1f77b4")
            for x in drawn:
                ax.axvline(x, color="black", linestyle="--", linewidth=1)
            if drawn:
                ax.plot([], [], color="black", linestyle="--", linewidth=1, label=drawn_label)
                ax.legend(fontsize=8)
            ax.set_xlabel(xlabel)
            ax.set_ylabel("candidates")
        s.plot = _save(fig, out, name)
        s.text.append(f"Scoring {scoring_id}: {len(inf)} candidates"
                      + (", one panel per noise type: its density (red) over the clean rows' density (grey)."
                         if by_label else " (no noise labels in the pool)."))
    for budget, g in gammas.items():
        above = hf >= g
        text = f"{_gamma_label(budget, g)}: {int(above.sum())} of {len(hf)} candidates are high-quality"
        if by_label:
            text += " (" + ", ".join(f"{t} {100 * above[labels == t].mean():.0f}%" for t in _type_order(labels)) + ")"
        frac.text.append(text + ".")
    if hist.plot and by_label:
        hist.text.append(f"Mean influence clipped to its 1-99 percentile range [{lo:.3g}, {hi:.3g}].")
    if by_label:
        g = inf.assign(label=labels).groupby("label").agg(
            n=("mean", "size"), mean_influence=("mean", "mean"), helped_fraction=("helped_fraction", "mean"))
        hist.table_md = g.reset_index().to_markdown(index=False, floatfmt=".4g")
        hist.table_html = g.reset_index().to_html(index=False, border=0, float_format=lambda v: f"{v:.4g}")
    return [hist, frac]


def _gdig_selections(store) -> pd.DataFrame:
    sels = store.selections()
    return sels[sels["strategy"] == "gdig"].sort_values("budget") if len(sels) else sels


def cluster_section(store, out: Path) -> Section:
    s = Section("Cluster sizes")
    gsel = _gdig_selections(store)
    sizes = {}
    for _, row in gsel.iterrows():
        cl = store.clusters(row["selection_id"])
        if len(cl):
            sel = store.selection(row["selection_id"])
            picked = sel["cluster"].value_counts() if "cluster" in sel else pd.Series(dtype=int)
            sizes[int(row["budget"])] = (cl["cluster"].value_counts().sort_index(), picked)
    if not sizes:
        s.text.append("Not available: no G-DIG clustering in this store (run `gdig select` with strategy gdig).")
        return s
    plt = _plt()
    shown = list(sizes.items())[:4]
    fig, axes = plt.subplots(1, len(shown), figsize=(4.2 * len(shown), 3.4), squeeze=False)
    from matplotlib.ticker import MaxNLocator

    for ax, (budget, (members, picked)) in zip(axes[0], shown):
        members = members.sort_values(ascending=False)  # largest first; the bar's label is the cluster id
        x = np.arange(len(members))
        ax.bar(x, members.values, color="#bbbbbb", label="high-quality members")
        ax.bar(x, picked.reindex(members.index).fillna(0).values, color="#1f77b4", label="selected")
        ax.set_title(f"budget {budget}: {len(members)} clusters", fontsize=9)
        ax.set_xlabel("cluster (by size)")
        ax.set_ylabel("examples")
        step = max(1, -(-len(x) // 12))  # at most 12 labels
        ax.set_xticks(x[::step], [str(int(c)) for c in members.index[::step]], fontsize=7)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0][0].legend(fontsize=8)
    s.plot = _save(fig, out, "cluster_sizes.png")
    s.text.append("Members of each K-means cluster of the high-quality candidates and how many were selected.")
    return s


def pca_2d(X: np.ndarray) -> np.ndarray:
    """The first two principal components of the rows of X (numpy SVD of the centred matrix)."""
    Xc = X - X.mean(axis=0, keepdims=True)
    if Xc.shape[0] < 2:
        return np.zeros((Xc.shape[0], 2))
    _, _, vt = np.linalg.svd(Xc, full_matrices=False)
    proj = Xc @ vt[:2].T
    return np.pad(proj, ((0, 0), (0, 2 - proj.shape[1])))


def between_group_axes(X: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Two directions that spread the group means most (PCA of the size-weighted, centred group
    means; an LDA without whitening): the plane in which groups separate, if they do."""
    keys, inv, counts = np.unique(groups, return_inverse=True, return_counts=True)
    if len(keys) < 2:
        return np.eye(X.shape[1])[:, :2] if X.shape[1] >= 2 else np.pad(np.eye(X.shape[1]), ((0, 0), (0, 1)))
    means = np.stack([X[inv == i].mean(0) for i in range(len(keys))])
    centred = (means - X.mean(0)) * np.sqrt(counts)[:, None]
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    axes = vt[:2].T
    return np.pad(axes, ((0, 0), (0, 2 - axes.shape[1])))


_TYPE_COLOURS = ["#d62728", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#2ca02c"]


def projection_section(store, out: Path, scoring_id: str | None) -> Section:
    s = Section("Gradient sketches in 2-D")
    if scoring_id is None:
        s.text.append("Not available: no influence scores in this store (run `gdig select`).")
        return s
    ids, X = store.sketches(scoring_id)
    if len(ids) == 0:
        s.text.append("Not available: this scoring stored no gradient sketches (influence.scoring.sketch: false).")
        return s
    ids, Xk = _sample_sketches(ids, X)
    inf = store.influence(scoring_id).set_index("example_id")
    labels = _labels(inf.reset_index()).set_axis(inf.index).reindex(ids).fillna("clean").to_numpy()
    c, budget = _latest_gdig_clusters(store, ids)
    panels = []
    if len(set(labels)) > 1:
        panels.append("noise")  # does the gradient tell noise from clean rows?
    if (c >= 0).any():
        panels.append("cluster")
    if not panels:
        panels.append("plain")
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 5), squeeze=False)
    for ax, kind in zip(axes[0], panels):
        if kind == "noise":
            _noise_panel(ax, Xk, labels)
        elif kind == "cluster":
            _cluster_panel(ax, plt, Xk, c, budget)
        else:
            P = pca_2d(Xk)
            ax.scatter(P[:, 0], P[:, 1], s=5, c="#1f77b4")
            ax.set_title("first two principal components", fontsize=9)
        ax.set_xlabel("axis 1")
        ax.set_ylabel("axis 2")
        ax.legend(fontsize=7, loc="best", markerscale=1.5)
    s.plot = _save(fig, out, "sketch_projection.png")
    s.text.append(f"{len(ids)} candidate gradient sketches (dimension {X.shape[1]}, L2-normalised as for "
                  "clustering), each panel projected on the two directions along which its groups' means differ "
                  "most (the noise types; the largest clusters): groups that overlap there overlap in every "
                  "linear 2-D view of the sketches.")
    return s


def _sample_sketches(ids: list[str], X: np.ndarray) -> tuple[list[str], np.ndarray]:
    """At most MAX_POINTS sketches (a fixed sample, in order), L2-normalised: the space K-means
    clusters in."""
    rng = np.random.default_rng(0)
    keep = np.sort(rng.choice(len(ids), MAX_POINTS, replace=False)) if len(ids) > MAX_POINTS else np.arange(len(ids))
    Xk = X[keep].astype(np.float64)
    Xk /= np.maximum(np.linalg.norm(Xk, axis=1, keepdims=True), 1e-12)
    return [ids[i] for i in keep], Xk


def _latest_gdig_clusters(store, ids: list[str]) -> tuple[np.ndarray, int | None]:
    """The cluster of each id in the last gdig selection (-1: not high-quality, or no gdig
    selection) and that selection's budget."""
    gsel = _gdig_selections(store)
    cluster = pd.Series(-1, index=ids)
    budget = None
    if len(gsel):
        sid, budget = gsel.iloc[-1]["selection_id"], int(gsel.iloc[-1]["budget"])
        cl = store.clusters(sid).set_index("example_id")["cluster"]
        common = cluster.index.intersection(cl.index)
        cluster[common] = cl[common].astype(int)
    return cluster.to_numpy(), budget


def _noise_panel(ax, Xk: np.ndarray, labels: np.ndarray) -> None:
    """Clean rows grey, each noise type in its colour, on the plane that separates the types."""
    P = Xk @ between_group_axes(Xk, labels)
    ax.scatter(P[labels == "clean", 0], P[labels == "clean", 1], s=5, c="#bbbbbb",
               label=f"clean ({int((labels == 'clean').sum())})")
    for i, t in enumerate(t for t in _type_order(pd.Series(labels)) if t != "clean"):
        m = labels == t
        ax.scatter(P[m, 0], P[m, 1], s=9, c=_TYPE_COLOURS[i % len(_TYPE_COLOURS)], label=f"{t} ({int(m.sum())})")
    ax.set_title("by noise type", fontsize=9)


def _cluster_panel(ax, plt, Xk: np.ndarray, c: np.ndarray, budget: int | None) -> None:
    """The 8 largest clusters in colour, the smaller ones grey, the rest of the pool pale."""
    hq = c >= 0
    sizes = pd.Series(c[hq]).value_counts()
    top = list(sizes.index[:8])
    in_top = np.isin(c, top)
    P = Xk @ between_group_axes(Xk[in_top], c[in_top])  # the plane that separates the largest ones
    ax.scatter(P[~hq, 0], P[~hq, 1], s=3, c="#eeeeee", label=f"not high-quality ({int((~hq).sum())})")
    rest = hq & ~in_top
    if rest.any():
        ax.scatter(P[rest, 0], P[rest, 1], s=4, c="#bbbbbb", label=f"{len(sizes) - len(top)} smaller clusters")
    for i, k in enumerate(top):
        m = c == k
        ax.scatter(P[m, 0], P[m, 1], s=10, color=plt.get_cmap("tab10")(i), label=f"cluster {k} ({int(m.sum())})")
    ax.set_title(f"the {len(top)} largest of {len(sizes)} K-means clusters of gdig@{budget}", fontsize=9)


def metric_budget_section(store, out: Path) -> Section:
    s = Section("Metric vs budget")
    m = store.metrics()
    m = m[m["strategy"].notna() & m["value"].notna() & m["budget"].notna()] if len(m) else m
    if len(m) == 0:
        s.text.append("Not available: no metrics in this store (run `gdig run`).")
        return s
    order = ["BLEU", "chrF", "COMET", "NLL"]
    panels = sorted(set(zip(m["eval_set"], m["metric"])),
                    key=lambda p: (p[0], order.index(p[1]) if p[1] in order else 9))
    base = _base_scores(store)
    budgets = sorted(int(b) for b in m["budget"].unique())
    strategies = sorted(m["strategy"].unique(), key=lambda x: (x != "gdig", x))
    colour = {st: _plt().get_cmap("tab10")(i) for i, st in enumerate(strategies)}
    plt = _plt()
    ncol = min(4, len(panels))
    nrow = -(-len(panels) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.8 * ncol, 3.2 * nrow + 0.6), squeeze=False)
    for ax, (ev, metric) in zip(axes.flat, panels):
        sub = m[(m["eval_set"] == ev) & (m["metric"] == metric)]
        for strategy in strategies:
            g = sub[sub["strategy"] == strategy].sort_values("budget")
            if len(g):
                ax.plot(g["budget"], g["value"], marker="o", color=colour[strategy], label=strategy)
        if (ev, metric) in base:
            ax.axhline(base[(ev, metric)], color="black", linestyle="--", linewidth=1, label="base model (not finetuned)")
        ax.set_title(f"{ev}: {metric}", fontsize=9)
        ax.set_xlabel("budget (examples)", fontsize=8)
        ax.set_ylabel(metric, fontsize=8)
        if len(budgets) > 1 and budgets[0] > 0 and budgets[-1] / budgets[0] > 8:
            ax.set_xscale("log")
        ax.set_xticks(budgets, [str(b) for b in budgets], fontsize=7)
        ax.minorticks_off()
        if len(budgets) == 1:
            ax.set_xlim(budgets[0] * 0.5, budgets[0] * 1.5)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    handles, names = {}, []
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in handles:
                handles[lab] = h
                names.append(lab)
    fig.legend([handles[n] for n in names], names, loc="lower center", ncol=len(names), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.08 if nrow == 1 else 0.04, 1, 1))
    with atomic_file(out / "metric_vs_budget.png", "report", seal=False) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    s.plot = "metric_vs_budget.png"
    s.text.append("Each strategy finetuned for the same number of steps at a budget; dashed: the base model "
                  "before finetuning.")
    return s


def _base_scores(store) -> dict[tuple[str, str], float]:
    m, ck = store.metrics(), store.table("checkpoints")
    if len(m) == 0 or len(ck) == 0:
        return {}
    base_ids = set(ck.loc[ck["kind"] == "base", "checkpoint_id"])
    rows = m[m["checkpoint_id"].isin(base_ids) & m["value"].notna()]
    return {(r.eval_set, r.metric): float(r.value) for r in rows.itertuples()}


def base_model_lines(store) -> list[str]:
    """Scores of the base model itself (metric rows of a 'base' checkpoint, outside the table)."""
    m, ck = store.metrics(), store.table("checkpoints")
    if len(m) == 0 or len(ck) == 0:
        return []
    base_ids = set(ck.loc[ck["kind"] == "base", "checkpoint_id"])
    rows = m[m["checkpoint_id"].isin(base_ids) & m["value"].notna()]
    out = []
    for ev, g in rows.groupby("eval_set"):
        vals = ", ".join(f"{r.metric} {r.value:.2f}" for r in g.itertuples())
        out.append(f"Base model before finetuning, {ev}: {vals}")
    return out


def comparison_section(store, checkpoints=None) -> Section:
    s = Section("Comparison (rows: strategy; columns: metric@budget)")
    table = comparison_table(store, checkpoints)
    s.table_md = comparison_markdown(table)
    if table.empty:
        s.text.append("Not available: no metrics in this store (run `gdig run`).")
        s.table_md = None
        return s
    base = base_model_lines(store)
    s.text += base
    if base:
        s.table_md = s.table_md.rstrip() + "\n\n" + "\n".join(f"- {b}" for b in base) + "\n"
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in table.attrs.get("notes", []))
    sigs = "".join(f"<li><code>{html.escape(x)}</code></li>" for x in table.attrs.get("signatures", []))
    s.table_html = table.reset_index().to_html(index=False, border=0, float_format=lambda v: f"{v:.2f}", na_rep="–")
    if notes or sigs:
        s.table_html += f"<ul>{notes}{sigs}</ul>"
    return s


# -- rendering ---------------------------------------------------------------------------------

_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:0.9em}td,th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}
h2{border-bottom:2px solid #eee;padding-bottom:4px;margin-top:1.6em}img{max-width:100%}code{font-size:0.85em}"""


def _img_tag(out: Path, name: str) -> str:
    data = base64.b64encode((out / name).read_bytes()).decode()
    return f'<img alt="{html.escape(name)}" src="data:image/png;base64,{data}">'


def render_html(title: str, sections: list[Section], out: Path) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    for s in sections:
        parts.append(f"<h2>{html.escape(s.title)}</h2>")
        parts += [f"<p>{html.escape(t)}</p>" for t in s.text]
        if s.plot:
            parts.append(_img_tag(out, s.plot))
        if s.table_html:
            parts.append(s.table_html)
    parts.append("</body></html>")
    return "\n".join(parts)


def render_markdown(title: str, sections: list[Section]) -> str:
    parts = [f"# {title}\n"]
    for s in sections:
        parts.append(f"## {s.title}\n")
        parts += [f"{t}\n" for t in s.text]
        if s.plot:
            parts.append(f"![{s.title}]({s.plot})\n")
        if s.table_md:
            parts.append(s.table_md.rstrip() + "\n")
    return "\n".join(parts)


def run_section(header: dict[str, str]) -> Section:
    """What this report is of: date, command, config, workspace (first on the page)."""
    s = Section("This run")
    s.table_md = "\n".join(f"- **{k}**: `{v}`" for k, v in header.items()) + "\n"
    s.table_html = "<table>" + "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
                                       f"<td style='text-align:left'><code>{html.escape(str(v))}</code></td></tr>"
                                       for k, v in header.items()) + "</table>"
    return s


def write_report(store, out_dir: str | Path, title: str = "gdig report", *, header: dict[str, str] | None = None,
                 gamma: float | Mapping[int, float] | None = None, checkpoints=None) -> dict[str, Path]:
    """report.html (self-contained), report.md + PNGs, comparison.csv/.md in out_dir.

    store: an open Store, or the path of a store DB (opened for the call).  header: what the
    run was (date, command, config, workspace...), shown first; default: the date and the store.
    gamma: the γ the run used, one number or {budget: γ used}, drawn on the helped-fraction plot.  checkpoints: the
    run's finetuned checkpoints, which the comparison table is limited to (default: every one).
    Returns paths by key: html, markdown, comparison_csv, comparison_markdown, and plot_<name>.
    """
    if isinstance(store, (str, Path)):
        from gdig.store import Store

        with Store(store, read_only=True) as own:  # a report only reads
            return write_report(own, out_dir, title, header=header, gamma=gamma, checkpoints=checkpoints)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if header is None:
        header = {"date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "store": str(store.path)}
    scoring_id = latest_scoring(store)
    sections = [run_section(header), overview_section(store), *influence_section(store, out, scoring_id, gamma),
                cluster_section(store, out),
                projection_section(store, out, scoring_id), metric_budget_section(store, out),
                comparison_section(store, checkpoints)]
    paths: dict[str, Path] = {"html": out / "report.html", "markdown": out / "report.md"}
    write_text_atomic(paths["html"], render_html(title, sections, out))
    write_text_atomic(paths["markdown"], render_markdown(title, sections))
    cmp_paths = write_comparison(store, out, checkpoints)
    paths["comparison_csv"], paths["comparison_markdown"] = cmp_paths["csv"], cmp_paths["markdown"]
    for s in sections:
        if s.plot:
            paths[f"plot_{Path(s.plot).stem}"] = out / s.plot
    return paths


def reports_dir(cfg) -> Path:
    """Where the runs' reports go: {workspace.dir}/reports/<run>/ and reports/latest."""
    from gdig.workspace import Workspace

    return Workspace(cfg).reports


def run_header(cfg, command: str, config: str | Path | None = None, **extra: str) -> dict[str, str]:
    """The lines a report starts with: date, command, config, workspace (+ extra, e.g. the flow run)."""
    from gdig.runinfo import workspace_label

    head = {"date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "command": command,
            "config": str(Path(config).resolve()) if config else "(given as an object)",
            "workspace": f"{workspace_label(cfg)} ({cfg.workspace.db})"}
    return {**head, **{k: str(v) for k, v in extra.items()}}


def write_run_report(store, reports_dir: str | Path, run_id: str, header: dict[str, str], *,
                     gamma: float | Mapping[int, float] | None = None, title: str | None = None,
                     checkpoints=None) -> dict[str, Path]:
    """The report of one run in reports_dir/<run_id>/, and reports_dir/latest pointing at it
    (a symlink; a copy where the filesystem has none).  Earlier runs' reports stay."""
    root = Path(reports_dir)
    out = root / run_id
    if out.exists():
        shutil.rmtree(out)
    paths = write_report(store, out, title or f"gdig report: {header.get('workspace', run_id)}", header=header,
                         gamma=gamma, checkpoints=checkpoints)
    latest, tmp = root / "latest", root / f".latest-{os.getpid()}"
    try:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        tmp.symlink_to(run_id, target_is_directory=True)
        os.replace(tmp, latest)
    except OSError:
        if latest.is_symlink():
            latest.unlink()
        elif latest.exists():
            shutil.rmtree(latest)
        shutil.copytree(out, latest)
    return paths


__all__ = ["write_report", "write_run_report", "run_header", "reports_dir", "pca_2d", "comparison_table", "write_comparison", "latest_scoring"]
