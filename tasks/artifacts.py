"""Prefect artifacts of a flow run (published from the flow body, so cached runs show them too)."""

from __future__ import annotations

from pathlib import Path

from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact


def _key(text: str) -> str:
    """Artifact keys: lowercase letters, digits and dashes."""
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")[:60]


def selection_markdown(data: dict, quality: dict, summary: dict) -> str:
    s = summary["summary"]
    lines = [
        "# gdig selection",
        "",
        f"- pool: **{data['pool']['n_rows']}** candidates (`{data['pool']['name']}`), "
        f"seeds: **{data['seed']['n_rows']}**, eval sets: "
        + (", ".join(f"`{e['name']}` ({e['n_rows']})" for e in data["eval"]) or "none"),
        f"- reference pool for checkpoint + curvature: first {data['reference']['n_rows']} rows",
        "- D_hq (helped fraction >= gamma): " + ", ".join(
            f"budget {b}: gamma {v['gamma']:.4g}, **{v['n_high_quality']}** of {quality['pool_size']}"
            for b, v in quality["per_budget"].items()),
        f"- scoring: `{s['scoring_id']}`",
        "",
        "| strategy | budget | size | reasons | clusters | covered | export |",
        "|---|---:|---:|---|---:|---|---|",
    ]
    for r in s["selections"]:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(r["counts"].items()))
        cov = "" if r["clusters_covered"] is None else f"{r['clusters_covered']}/{r['clusters_total']}"
        lines.append(f"| {r['strategy']} | {r['budget']} | {r['size']} | {reasons} | "
                     f"{r['n_clusters'] or ''} | {cov} | `{r['export_path']}` |")
    if s.get("auroc"):
        lines += ["", "AUROC clean vs noisy: " + ", ".join(f"{k} {v:.3f}" for k, v in s["auroc"].items())]
    lines += [f"\n> warning: {w}" for w in s.get("warnings", [])]
    return "\n".join(lines)


def publish_selection(cfg, data: dict, quality: dict, summary: dict, exports: list[dict]) -> None:
    create_markdown_artifact(selection_markdown(data, quality, summary), key="gdig-selection",
                             description="pool, D_hq, clusters and selection per budget")
    for e in exports:
        create_link_artifact(Path(e["path"]).resolve().as_uri(), link_text=Path(e["path"]).name,
                             key=_key(f"gdig-export-{e['strategy']}-{e['budget']}"),
                             description=f"exported JSONL of {e['strategy']} at budget {e['budget']}")


def publish_comparison(cfg, report: dict) -> None:
    if report["table"]:
        create_table_artifact(report["table"], key="gdig-comparison",
                              description="strategy x (budget, metric); " + "; ".join(report["notes"]))
    else:
        create_markdown_artifact("_No metrics._ " + "; ".join(report["notes"]), key="gdig-comparison")
    for name, path in sorted(report["paths"].items()):
        if name.startswith("plot_"):
            continue
        create_link_artifact(Path(path).resolve().as_uri(), link_text=Path(path).name,
                             key=_key(f"gdig-report-{name}"), description=f"report file ({name})")
