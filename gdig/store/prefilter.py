"""Prefilter verdicts: the prefilter table, one verdict per dataset row and config signature.

An extension of the dataset tables: verdicts are about a dataset's rows and are read back
joined with them (position, label).
"""

from __future__ import annotations

import json

import pandas as pd

from gdig.store.datasets import DatasetTables
from gdig.store.schema import StoreError, now


class PrefilterTables(DatasetTables):
    def add_prefilter(self, dataset: str, signature: str, decisions: pd.DataFrame) -> None:
        """Load the verdicts of one prefilter run (replaces an earlier load of the same signature).

        decisions: example_id, passed, rule, figure, and one column per check (its figure;
        NaN = not judged), as gdig.prefilter.prefilter_rows returns them.
        """
        self._require_dataset(dataset)
        checks = [c for c in decisions.columns if c not in ("example_id", "passed", "rule", "figure")]
        values = decisions[checks].astype(float).to_numpy()
        figures = [  # NaN is not JSON: a check that did not judge the row is left out
            json.dumps({c: float(v) for c, v in zip(checks, row) if v == v}, sort_keys=True) for row in values
        ]
        out = pd.DataFrame({
            "dataset": dataset, "signature": signature,
            "example_id": decisions["example_id"].astype(str),
            "passed": decisions["passed"].astype(bool),
            "rule": decisions["rule"].astype(object).where(~decisions["passed"].astype(bool), None),
            "figure": decisions["figure"].astype(float),
            "figures": figures, "created_at": now(),
        })
        with self.transaction():
            self.con.execute("DELETE FROM prefilter WHERE dataset = ? AND signature = ?", [dataset, signature])
            self._insert_df("prefilter", out)
            stray = self.con.execute(
                "SELECT count(*) FROM prefilter p ANTI JOIN dataset_examples m "
                "ON m.dataset = p.dataset AND m.example_id = p.example_id "
                "WHERE p.dataset = ? AND p.signature = ?", [dataset, signature],
            ).fetchone()[0]
            if stray:
                raise StoreError(f"prefilter verdicts for {stray} example(s) that are not in dataset {dataset!r}")

    def prefilter_signatures(self, dataset: str) -> list[str]:
        """Signatures under which the dataset's verdicts are stored, newest first."""
        return self.con.execute(
            "SELECT signature FROM prefilter WHERE dataset = ? GROUP BY signature ORDER BY max(created_at) DESC",
            [dataset],
        ).df()["signature"].tolist()

    def prefilter(self, dataset: str, signature: str) -> pd.DataFrame:
        """Verdicts in dataset order: example_id, position, label, passed, rule, figure, figures (dict)."""
        df = self.con.execute(
            "SELECT p.example_id, m.position, m.label, p.passed, p.rule, p.figure, p.figures "
            "FROM prefilter p JOIN dataset_examples m ON m.dataset = p.dataset AND m.example_id = p.example_id "
            "WHERE p.dataset = ? AND p.signature = ? ORDER BY m.position",
            [dataset, signature],
        ).df()
        df["figures"] = [json.loads(f) if isinstance(f, str) else {} for f in df["figures"]]
        return df

    def prefilter_passed(self, dataset: str, signature: str) -> tuple[int, list[str]]:
        """(verdicts stored, ids of the rows that passed) without the figures: what scoring needs."""
        n, = self.con.execute("SELECT count(*) FROM prefilter WHERE dataset = ? AND signature = ?",
                              [dataset, signature]).fetchone()
        ids = self.con.execute("SELECT example_id FROM prefilter WHERE dataset = ? AND signature = ? AND passed",
                               [dataset, signature]).df()["example_id"].tolist()
        return int(n), ids

    def prefilter_counts(self, dataset: str, signature: str) -> pd.DataFrame:
        """Rejected rows per rule (most first): rule, n."""
        return self.con.execute(
            "SELECT rule, count(*) AS n FROM prefilter WHERE dataset = ? AND signature = ? AND NOT passed "
            "GROUP BY rule ORDER BY n DESC, rule",
            [dataset, signature],
        ).df()
