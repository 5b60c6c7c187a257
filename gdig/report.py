"""The run report: one HTML page (plots embedded) and a markdown twin, built from the store alone.

Sections: data overview, influence-score histogram (split by noise label when the pool has
labels), helped-fraction distribution, cluster sizes, a 2-D PCA projection of the gradient
sketches coloured by cluster and marking the selection, metric vs budget per strategy, and
the comparison table.  Every section works on a partial store: what is missing says so and
names the command that fills it.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from gdig.evaluate import comparison_markdown, comparison_table, write_comparison

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
    fig.savefig(out / name, dpi=110)
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
    return s


def influence_section(store, out: Path, scoring_id: str | None) -> list[Section]:
    hist, frac = Section("Influence scores"), Section("Helped fraction")
    if scoring_id is None:
        for s in (hist, frac):
            s.text.append("Not available: no influence scores in this store (run `gdig select`).")
        return [hist, frac]
    inf = store.influence(scoring_id)
    labels = _labels(inf)
    by_label = labels.nunique() > 1
    plt = _plt()
    for s, col, xlabel, name in (
        (hist, "mean", "mean influence over seeds (negative = helps)", "influence_hist.png"),
        (frac, "helped_fraction", "fraction of seed examples helped (I < 0)", "helped_fraction.png"),
    ):
        fig, ax = plt.subplots(figsize=(7, 3.6))
        vals = inf[col].astype(float)
        bins = np.histogram_bin_edges(vals[np.isfinite(vals)], bins=40) if np.isfinite(vals).any() else 10
        for lab in sorted(labels.unique(), key=lambda x: (x != "clean", x)):
            ax.hist(vals[labels == lab], bins=bins, alpha=0.6, label=f"{lab} ({int((labels == lab).sum())})")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("candidates")
        if by_label:
            ax.legend(title="noise label", fontsize=8)
        s.plot = _save(fig, out, name)
        s.text.append(f"Scoring {scoring_id}: {len(inf)} candidates"
                      + (", split by the pool's noise labels." if by_label else " (no noise labels in the pool)."))
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
    for ax, (budget, (members, picked)) in zip(axes[0], shown):
        ax.bar(members.index, members.values, color="#bbbbbb", label="high-quality members")
        ax.bar(members.index, picked.reindex(members.index).fillna(0).values, color="#1f77b4", label="selected")
        ax.set_title(f"budget {budget}: {len(members)} clusters")
        ax.set_xlabel("cluster")
        ax.set_ylabel("examples")
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


def projection_section(store, out: Path, scoring_id: str | None) -> Section:
    s = Section("Gradient sketches in 2-D (PCA)")
    if scoring_id is None:
        s.text.append("Not available: no influence scores in this store (run `gdig select`).")
        return s
    ids, X = store.sketches(scoring_id)
    if len(ids) == 0:
        s.text.append("Not available: this scoring stored no gradient sketches (influence.scoring.sketch: false).")
        return s
    rng = np.random.default_rng(0)
    keep = np.sort(rng.choice(len(ids), MAX_POINTS, replace=False)) if len(ids) > MAX_POINTS else np.arange(len(ids))
    ids = [ids[i] for i in keep]
    Xk = X[keep].astype(np.float64)
    Xk /= np.maximum(np.linalg.norm(Xk, axis=1, keepdims=True), 1e-12)  # the space K-means clusters in
    P = pca_2d(Xk)
    gsel = _gdig_selections(store)
    cluster = pd.Series(-1, index=ids)
    selected = pd.Series(False, index=ids)
    title = "all candidates"
    if len(gsel):
        sid = gsel.iloc[-1]["selection_id"]
        cl = store.clusters(sid).set_index("example_id")["cluster"]
        common = cluster.index.intersection(cl.index)
        cluster[common] = cl[common].astype(int)
        chosen = set(store.selection(sid)["example_id"])
        selected[:] = [i in chosen for i in ids]
        title = f"coloured by cluster of gdig budget {int(gsel.iloc[-1]['budget'])}; x = selected"
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 5))
    c = cluster.to_numpy()
    ax.scatter(P[c < 0, 0], P[c < 0, 1], s=6, c="#cccccc", label="not high-quality")
    if (c >= 0).any():
        ax.scatter(P[c >= 0, 0], P[c >= 0, 1], s=10, c=c[c >= 0], cmap="tab20", label="clustered")
    sel = selected.to_numpy()
    if sel.any():
        ax.scatter(P[sel, 0], P[sel, 1], s=12, marker="x", c="black", linewidths=0.6, alpha=0.6, label="selected")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="best")
    s.plot = _save(fig, out, "sketch_pca.png")
    s.text.append(f"{len(ids)} candidate gradient sketches (dimension {X.shape[1]}, L2-normalised as for "
                  "clustering) projected on their first two principal components.")
    return s


def metric_budget_section(store, out: Path) -> Section:
    s = Section("Metric vs budget")
    m = store.metrics()
    m = m[m["strategy"].notna() & m["value"].notna() & m["budget"].notna()] if len(m) else m
    if len(m) == 0:
        s.text.append("Not available: no metrics in this store (run `gdig run`).")
        return s
    panels = sorted(set(zip(m["eval_set"], m["metric"])), key=lambda p: (p[0], ["BLEU", "chrF", "COMET"].index(p[1]) if p[1] in ("BLEU", "chrF", "COMET") else 9))
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, (ev, metric) in zip(axes[0], panels):
        sub = m[(m["eval_set"] == ev) & (m["metric"] == metric)]
        for strategy, g in sub.groupby("strategy"):
            g = g.sort_values("budget")
            ax.plot(g["budget"], g["value"], marker="o", label=strategy)
        ax.set_title(f"{ev}: {metric}")
        ax.set_xlabel("budget (examples)")
        ax.set_ylabel(metric)
        if sub["budget"].nunique() > 1 and sub["budget"].min() > 0 and sub["budget"].max() / sub["budget"].min() > 8:
            ax.set_xscale("log")
    axes[0][0].legend(fontsize=8)
    s.plot = _save(fig, out, "metric_vs_budget.png")
    return s


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


def comparison_section(store) -> Section:
    s = Section("Comparison (rows: strategy; columns: metric@budget)")
    table = comparison_table(store)
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


def write_report(store, out_dir: str | Path, title: str = "gdig report") -> dict[str, Path]:
    """report.html (self-contained), report.md + PNGs, comparison.csv/.md in out_dir.

    store: an open Store, or the path of a store DB (opened for the call).
    Returns paths by key: html, markdown, comparison_csv, comparison_markdown, and plot_<name>.
    """
    if isinstance(store, (str, Path)):
        from gdig.store import Store

        with Store(store) as own:
            return write_report(own, out_dir, title)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scoring_id = latest_scoring(store)
    sections = [overview_section(store), *influence_section(store, out, scoring_id), cluster_section(store, out),
                projection_section(store, out, scoring_id), metric_budget_section(store, out),
                comparison_section(store)]
    paths: dict[str, Path] = {"html": out / "report.html", "markdown": out / "report.md"}
    paths["html"].write_text(render_html(title, sections, out), encoding="utf-8")
    paths["markdown"].write_text(render_markdown(title, sections), encoding="utf-8")
    cmp_paths = write_comparison(store, out)
    paths["comparison_csv"], paths["comparison_markdown"] = cmp_paths["csv"], cmp_paths["markdown"]
    for s in sections:
        if s.plot:
            paths[f"plot_{Path(s.plot).stem}"] = out / s.plot
    return paths


__all__ = ["write_report", "pca_2d", "comparison_table", "write_comparison", "latest_scoring"]
