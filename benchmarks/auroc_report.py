"""Markdown tables from the AUROC and strategy CSVs that selection_quality.py saves per pool
adaptation (OUT/auroc-<adaptation>.csv, OUT/strategies-<adaptation>.csv).

    python benchmarks/auroc_report.py OUT [OUT ...] [--scores NAME,NAME] [--strategies NAME,NAME]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

ADAPTATIONS = ("none", "lora-merged", "lora-adapters")


def markdown(df: pd.DataFrame, fmt: str) -> str:
    esc = lambda x: str(x).replace("|", "\\|")  # noqa: E731 (|D_hq| inside a table cell)
    cols = [esc(c) for c in df.columns]
    lines = ["| " + " | ".join([""] + cols) + " |", "|" + "---|" * (len(cols) + 1)]
    for name, row in df.iterrows():
        cells = [fmt.format(v) if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join([esc(name)] + cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", nargs="+")
    ap.add_argument("--scores", help="comma-separated rows of the AUROC table (default: all)")
    ap.add_argument("--strategies", help="comma-separated rows of the strategy table (default: all)")
    args = ap.parse_args()
    for out in map(Path, args.out):
        for a in ADAPTATIONS:
            f = out / f"auroc-{a}.csv"
            if not f.exists():
                continue
            df = pd.read_csv(f, index_col=0)
            if args.scores:
                df = df.loc[[s for s in args.scores.split(",") if s in df.index]]
            print(f"\n### {out.name}, pool adaptation: {a} (AUROC clean vs noisy)\n")
            print(markdown(df, "{:.3f}"))
            f = out / f"strategies-{a}.csv"
            if f.exists():
                st = pd.read_csv(f, index_col=0)
                if args.strategies:
                    st = st.loc[[s for s in args.strategies.split(",") if s in st.index]]
                print(f"\n### {out.name}, pool adaptation: {a} (strategies at the budget)\n")
                print(markdown(st, "{:.4g}"))


if __name__ == "__main__":
    main()
