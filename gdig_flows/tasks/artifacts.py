"""Prefect artifacts of a flow run (published from the flow body, so cached runs show them too).

Keys are `gdig-<workspace>-<what>` (gdig_flows.tasks.naming.artifact_key), so runs of several workspaces on
one server keep separate histories.  Files are named by their path as text (a `file://` link
does not open from the browser's UI) and small ones are embedded.
"""

from __future__ import annotations

import re
from pathlib import Path

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from gdig.runinfo import workspace_label
from gdig.selection.rules import clauses, thresholds
from gdig_flows.tasks.naming import artifact_key

EMBED_LIMIT = 20_000  # characters of a markdown file embedded in its artifact
# each D_hq rule's clause in the selection artifact, by rule key ({n}: candidates it ranks last, {t}: its threshold)
ARTIFACT_CLAUSES = {
    "closing_loss_max": "{n} ranked last by the closing-token rule (closing loss > {t:g} nats)",
    "source_gain_min": "{n} ranked last by the source-gain rule (gain < {t:g} nats per target token)",
}


def selection_rows(summary: dict) -> list[dict]:
    """One row per strategy x budget with the columns `gdig select` prints."""
    rows = []
    for r in summary["selections"]:
        row = {
            "strategy": r["strategy"], "budget": r["budget"], "size": r["size"],
            "reasons": ", ".join(f"{k} {v}" for k, v in sorted(r["counts"].items())),
            "clusters": "" if r["clusters_covered"] is None else f"{r['clusters_covered']}/{r['clusters_total']}",
            "even": "" if r["cluster_evenness"] is None else f"{r['cluster_evenness']:.2f}",
        }
        if r.get("noise"):
            nz = r["noise"]
            row.update({"clean %": f"{100 * nz['selected_clean_fraction']:.1f}",
                        "rm-prec": f"{nz['removal_precision']:.3f}", "rm-rec": f"{nz['removal_recall']:.3f}"})
            row.update({f"removed {k}": f"{v['removal_rate']:.2f}" for k, v in sorted(nz["per_type"].items())})
        row["export"] = r["export_path"] or ""
        rows.append(row)
    return rows


def markdown_table(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    cols = list(dict.fromkeys(c for r in rows for c in r))
    out = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in rows:
        out.append("| " + " | ".join(f"`{r[c]}`" if c == "export" and r.get(c) else str(r.get(c, ""))
                                     for c in cols) + " |")
    return out


def selection_markdown(cfg, data: dict, quality: dict, summary: dict) -> str:
    s = summary["summary"]
    lines = [
        f"# gdig selection: workspace `{workspace_label(cfg)}`",
        "",
        f"- workspace: `{cfg.workspace.db}`",
        f"- pool: **{data['pool']['n_rows']}** candidates (`{data['pool']['name']}`), "
        f"seeds: **{data['seed']['n_rows']}**, eval sets: "
        + (", ".join(f"`{e['name']}` ({e['n_rows']})" for e in data["eval"]) or "none"),
        f"- reference pool for checkpoint + curvature: first {data['reference']['n_rows']} rows",
        "- D_hq (helped fraction >= gamma): " + ", ".join(
            f"budget {b}: gamma {v['gamma']:.4g}, **{v['n_high_quality']}** of {quality['pool_size']} "
            f"({100 * v['n_high_quality'] / max(quality['pool_size'], 1):.1f}%)"
            + "".join(f", {c}" for c in clauses(ARTIFACT_CLAUSES, thresholds(cfg.selection), v))
            for b, v in quality["per_budget"].items()),
        f"- scoring: `{s['scoring_id']}`",
    ]
    if s.get("noise_types"):
        n_noisy = sum(s["noise_types"].values())
        lines.append(f"- noise labels: {n_noisy} noisy of {s['pool_size']} ("
                     + ", ".join(f"{k} {v}" for k, v in sorted(s["noise_types"].items())) + ")")
    if s.get("auroc"):
        lines.append("- AUROC clean vs noisy: " + ", ".join(f"{k} {v:.3f}" for k, v in s["auroc"].items()))
    lines += ["", *markdown_table(selection_rows(s))]
    if any(r.get("noise") for r in s["selections"]):
        lines += ["", "clean %: clean rows in the selection; rm-prec / rm-rec: precision and recall of the "
                  "rows left out as noise removal; removed <type>: share of that noise type left out."]
    lines += [f"\n> warning: {w}" for w in s.get("warnings", [])]
    return "\n".join(lines)


def publish_selection(cfg, data: dict, quality: dict, summary: dict, exports: list[dict]) -> None:
    create_markdown_artifact(selection_markdown(cfg, data, quality, summary), key=artifact_key(cfg, "selection"),
                             description=f"{workspace_label(cfg)}: pool, D_hq, clusters and selection per budget")
    create_table_artifact(
        [{"strategy": e["strategy"], "budget": e["budget"], "size": e["size"], "path": str(e["path"])}
         for e in exports],
        key=artifact_key(cfg, "exports"), description=f"{workspace_label(cfg)}: exported JSONL per selection")


def publish_comparison(cfg, report: dict) -> None:
    ws = workspace_label(cfg)
    notes = "; ".join(report["notes"])
    if report["table"]:
        create_table_artifact(report["table"], key=artifact_key(cfg, "comparison"),
                              description=f"{ws}: strategy x (budget, metric)" + (f"; {notes}" if notes else ""))
    else:
        create_markdown_artifact("_No metrics._ " + notes, key=artifact_key(cfg, "comparison"))
    paths = report["paths"]
    md = Path(paths["markdown"]) if "markdown" in paths else None
    body = [f"# gdig report: workspace `{ws}`", "", "Files (open them on the machine that ran the flow):", ""]
    body += [f"- {name}: `{path}`" for name, path in sorted(paths.items()) if not name.startswith("plot_")]
    if md is not None and md.is_file():
        text = md.read_text(encoding="utf-8")
        if len(text) <= EMBED_LIMIT:
            # images are files beside report.md, which the UI cannot fetch: name them instead
            text = re.sub(r"!\[([^\]]*)\]\(([^)]*)\)", r"_(figure \2: \1, in the report directory)_", text)
            body += ["", "---", "", text]
    create_markdown_artifact("\n".join(body), key=artifact_key(cfg, "report"),
                             description=f"{ws}: the run's report (paths, and report.md embedded)")
