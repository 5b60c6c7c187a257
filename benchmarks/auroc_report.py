"""Markdown tables from the CSVs that selection_quality.py writes: OUT/auroc.csv (AUROC of every
quality score, overall and per noise type), OUT/strategies.csv (each VARIANT/STRATEGY selection at
the budget), OUT/auroc-paper-preset.csv (the same after the paper preset's step 1, when that variant ran)
and, after --downstream, OUT/downstream.csv (BLEU / chrF / NLL and the margins).

    python benchmarks/auroc_report.py OUT [OUT ...] [--scores NAME,NAME] [--strategies ROW,ROW] [--downstream ROW,ROW]

A table whose CSV is missing is left out; OUT without any of them is an error (exit 2).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd

# (file, title, number format, the option that picks its rows)
TABLES = (("auroc.csv", "AUROC clean vs noisy", "{:.3f}", "scores"),
          ("auroc-paper-preset.csv", "AUROC clean vs noisy after the paper preset's step 1", "{:.3f}", "scores"),
          ("strategies.csv", "selections at the budget", "{:.4g}", "strategies"),
          ("downstream.csv", "downstream", "{:.3f}", "downstream"))
HIDDEN = ("selection_id",)  # store keys, not figures


def cell(v, fmt: str) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else fmt.format(v)
    return str(v)


def markdown(df: pd.DataFrame, fmt: str) -> str:
    esc = lambda x: str(x).replace("|", "\\|")  # noqa: E731 (|D_hq| inside a table cell)
    cols = [esc(c) for c in df.columns]
    lines = ["| " + " | ".join([""] + cols) + " |", "|" + "---|" * (len(cols) + 1)]
    for name, row in df.iterrows():
        lines.append("| " + " | ".join([esc(name)] + [esc(cell(v, fmt)) for v in row]) + " |")
    return "\n".join(lines)


def pick(df: pd.DataFrame, rows: str | None) -> pd.DataFrame:
    """The rows named (in that order; unknown names are left out), or all."""
    if not rows:
        return df
    return df.loc[[r for r in rows.split(",") if r in df.index]]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", nargs="+", help="selection_quality.py --out folder(s)")
    ap.add_argument("--scores", help="comma-separated rows of the AUROC table (default: all)")
    ap.add_argument("--strategies", help="comma-separated VARIANT/STRATEGY rows of the selection table (default: all)")
    ap.add_argument("--downstream", help="comma-separated rows of the downstream table (default: all)")
    args = ap.parse_args()
    for out in map(Path, args.out):
        found = [t for t in TABLES if (out / t[0]).exists()]
        if not found:
            print(f"{out}: none of {', '.join(t[0] for t in TABLES)} (not a selection_quality.py --out folder)",
                  file=sys.stderr)
            return 2
        for file, title, fmt, option in found:
            df = pd.read_csv(out / file, index_col=0)
            df = pick(df.drop(columns=[c for c in HIDDEN if c in df.columns]), getattr(args, option))
            print(f"\n### {out.name}: {title}\n")
            print(markdown(df, fmt))
    return 0


if __name__ == "__main__":
    sys.exit(main())
