"""Selections: the tables clusters (K-means over a scoring's sketches) and selections (one
strategy x budget, ranked, with the reason each example was taken).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from gdig.store.schema import StoreBase, as_json, now


class SelectionTables(StoreBase):
    def add_clusters(self, clustering_id: str, scoring_id: str, df: pd.DataFrame) -> None:
        """df: example_id, cluster, distance."""
        with self.transaction():
            self.con.execute("DELETE FROM clusters WHERE clustering_id = ?", [clustering_id])
            out = df[["example_id", "cluster", "distance"]].copy()
            out.insert(0, "scoring_id", scoring_id)
            out.insert(0, "clustering_id", clustering_id)
            self._insert_df("clusters", out)

    def clusters(self, clustering_id: str) -> pd.DataFrame:
        return self.con.execute(
            "SELECT example_id, cluster, distance FROM clusters WHERE clustering_id = ? ORDER BY example_id",
            [clustering_id],
        ).df()

    def add_selection(
        self, selection_id: str, *, strategy: str, budget: int, df: pd.DataFrame, scoring_id: str | None,
        settings: dict[str, Any] | None = None,
    ) -> None:
        """df: example_id, rank, reason, cluster (nullable).  Replaces a selection of the same id.
        settings: what made this selection (γ used, |D_hq|, allocation, quality score ...)."""
        with self.transaction():
            self.con.execute("DELETE FROM selections WHERE selection_id = ?", [selection_id])
            out = df[["example_id", "rank", "reason"]].copy()
            out["cluster"] = df["cluster"] if "cluster" in df else None
            out.insert(0, "budget", budget)
            out.insert(0, "strategy", strategy)
            out.insert(0, "selection_id", selection_id)
            out["scoring_id"] = scoring_id
            out["created_at"] = now()
            out["settings"] = as_json(settings)
            self._insert_df("selections", out)

    def selection(self, selection_id: str) -> pd.DataFrame:
        """Selected examples in rank order, with their text."""
        return self.con.execute(
            "SELECT s.selection_id, s.strategy, s.budget, s.example_id, s.rank, s.reason, s.cluster, "
            "e.src_lang, e.tgt_lang, e.src, e.tgt "
            "FROM selections s JOIN examples e USING (example_id) WHERE s.selection_id = ? ORDER BY s.rank",
            [selection_id],
        ).df()

    def selections(self) -> pd.DataFrame:
        """One row per selection: id, strategy, budget, size, scoring."""
        return self.con.execute(
            "SELECT selection_id, any_value(strategy) AS strategy, any_value(budget) AS budget, "
            "count(*) AS size, any_value(scoring_id) AS scoring_id, max(created_at) AS created_at, "
            "any_value(settings) AS settings "
            "FROM selections GROUP BY selection_id ORDER BY strategy, budget"
        ).df()
