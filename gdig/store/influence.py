"""Influence and scoring: the tables curvature, scorings, influence (per-candidate aggregates)
and sketches.  The factors and the candidate x seed matrix are files; these rows hold their
paths and meta.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import pandas as pd
import pyarrow as pa

from gdig.store.schema import StoreBase, StoreError, as_json, now


class InfluenceTables(StoreBase):
    # -- curvature ----------------------------------------------------------------------------
    def add_curvature(
        self, curvature_id: str, *, checkpoint_id: str, strategy: str, granularity: str,
        modules: list[str], n_examples: int, n_tokens: int, path: str, meta: dict[str, Any] | None = None,
    ) -> None:
        self.con.execute(
            "INSERT OR REPLACE INTO curvature VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [curvature_id, checkpoint_id, strategy, granularity, as_json(modules), n_examples,
             n_tokens, str(path), as_json(meta), now()],
        )

    def get_curvature(self, curvature_id: str) -> dict[str, Any] | None:
        return self._one("SELECT * FROM curvature WHERE curvature_id = ?", [curvature_id])

    # -- scorings ---------------------------------------------------------------------------
    def add_scoring(
        self, scoring_id: str, *, curvature_id: str, seed_dataset: str, candidate_dataset: str,
        aggregates: pd.DataFrame, sketches: pd.DataFrame | None, matrix_path: str | None,
        n_seeds: int, meta: dict[str, Any] | None = None,
    ) -> None:
        """Load one merged scoring in one transaction (replaces a previous load of the same id).

        aggregates: example_id, position, loss, helped_fraction, mean, min, max (grad_norm and
        closing_loss where the scoring has them).
        sketches: example_id, sketch (list of float32).
        """
        if sketches is not None and len(sketches):
            sketches = pa.table({"example_id": pa.array(sketches["example_id"].astype(str), pa.string()),
                                 "sketch": pa.array([np.asarray(s, dtype=np.float32) for s in sketches["sketch"]],
                                                    pa.list_(pa.float32()))})
        self.add_scoring_chunks(scoring_id, curvature_id=curvature_id, seed_dataset=seed_dataset,
                                candidate_dataset=candidate_dataset, chunks=[(aggregates, sketches)],
                                n_candidates=len(aggregates), matrix_path=matrix_path, n_seeds=n_seeds, meta=meta)

    def add_scoring_chunks(
        self, scoring_id: str, *, curvature_id: str, seed_dataset: str, candidate_dataset: str,
        chunks: Iterable[tuple[pd.DataFrame, pa.Table | None]], n_candidates: int, matrix_path: str | None,
        n_seeds: int, meta: dict[str, Any] | None = None,
    ) -> None:
        """add_scoring from chunks of candidates, each (aggregates as add_scoring takes them,
        sketches as an Arrow table example_id, sketch list<float32>), loaded one at a time in one
        transaction: a pool of any size is never held whole."""
        with self.transaction():
            for t in ("influence", "sketches"):
                self.con.execute(f"DELETE FROM {t} WHERE scoring_id = ?", [scoring_id])
            for aggregates, sketches in chunks:
                agg = aggregates[["example_id", "position", "loss", "helped_fraction", "mean", "min", "max"]].copy()
                for col in ("grad_norm", "closing_loss"):
                    agg[col] = aggregates[col] if col in aggregates else np.nan
                agg.insert(0, "scoring_id", scoring_id)
                self._insert_df("influence", agg)
                if sketches is not None and len(sketches):
                    ids = pa.array([scoring_id] * len(sketches), pa.string())
                    self._insert_df("sketches", sketches.select(["example_id", "sketch"]).add_column(0, "scoring_id", ids))
            self.con.execute(
                "INSERT OR REPLACE INTO scorings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [scoring_id, curvature_id, seed_dataset, candidate_dataset, n_candidates, n_seeds,
                 matrix_path, as_json(meta), now()],
            )

    def get_scoring(self, scoring_id: str) -> dict[str, Any] | None:
        return self._one("SELECT * FROM scorings WHERE scoring_id = ?", [scoring_id])

    def influence(self, scoring_id: str, example_ids: list[str] | None = None) -> pd.DataFrame:
        """Per-candidate aggregates joined with label (noise type, when known), in pool order;
        `example_ids`: only these candidates (a few rows of a large pool)."""
        sc = self.get_scoring(scoring_id)
        if sc is None:
            raise StoreError(f"no scoring {scoring_id!r} in {self.path}")
        # a store opened read-only is not migrated: columns a newer schema added read as NULL
        have = {r[0] for r in self.con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'influence'").fetchall()}
        late = ", ".join(f"i.{c}" if c in have else f"NULL::DOUBLE AS {c}" for c in ("grad_norm", "closing_loss"))
        sql = ("SELECT i.example_id, i.position, i.loss, i.helped_fraction, i.mean, i.min, i.max, "
               f"{late}, m.label "
               "FROM influence i LEFT JOIN dataset_examples m "
               "ON m.example_id = i.example_id AND m.dataset = ? "
               "WHERE i.scoring_id = ? {only}ORDER BY i.position")
        if example_ids is None:
            return self.con.execute(sql.format(only=""), [sc["candidate_dataset"], scoring_id]).df()
        self.con.complete()  # see _insert_df
        self.con.register("_gdig_only", pd.DataFrame({"example_id": [str(e) for e in example_ids]}))
        try:
            return self.con.execute(sql.format(only="AND i.example_id IN (SELECT example_id FROM _gdig_only) "),
                                    [sc["candidate_dataset"], scoring_id]).df()
        finally:
            self.con.unregister("_gdig_only")

    # -- the source-free loss (the source-gain rule) -------------------------------------------
    def add_source_free_losses(self, checkpoint_id: str, prompt_key: str, example_ids, losses) -> None:
        """Store (or replace) the target losses without the source of some examples."""
        df = pd.DataFrame({"checkpoint_id": checkpoint_id, "prompt_key": prompt_key,
                           "example_id": [str(e) for e in example_ids],
                           "loss": np.asarray(losses, dtype=np.float64)})
        self._insert_df("source_free_loss", df, replace=True)

    def source_free_losses(self, checkpoint_id: str, prompt_key: str) -> pd.Series:
        """example_id -> loss without the source, for one checkpoint and prompt (empty when the
        table is missing: a store opened read-only from an older gdig)."""
        have = self.con.execute("SELECT count(*) FROM information_schema.tables "
                                "WHERE table_name = 'source_free_loss'").fetchone()[0]
        if not have:
            return pd.Series(dtype=np.float64, name="loss")
        df = self.con.execute("SELECT example_id, loss FROM source_free_loss WHERE checkpoint_id = ? AND "
                              "prompt_key = ?", [checkpoint_id, prompt_key]).df()
        return df.set_index("example_id")["loss"]

    def sketches(self, scoring_id: str, example_ids: list[str] | None = None) -> tuple[list[str], np.ndarray]:
        """(example_ids, matrix [n, d] float32) in pool order, optionally restricted.  Read as
        Arrow and reshaped: one float32 buffer, no Python object per row."""
        t = self.con.sql(
            "SELECT s.example_id, s.sketch FROM sketches s JOIN influence i USING (scoring_id, example_id) "
            "WHERE s.scoring_id = ? ORDER BY i.position",
            params=[scoring_id],
        ).to_arrow_table()
        ids = t.column("example_id").to_pylist()
        if len(ids) == 0:
            return [], np.zeros((0, 0), dtype=np.float32)
        sk = t.column("sketch").combine_chunks()
        width = sk.value_lengths().to_numpy(zero_copy_only=False)
        if sk.null_count or (width != width[0]).any():  # ragged or missing: row by row, as stored
            X = np.stack([np.asarray(v, dtype=np.float32) for v in sk.to_pylist()])
        else:
            X = sk.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(len(ids), int(width[0]))
        if example_ids is not None:
            at = pd.Index(ids).get_indexer(list(example_ids))
            if (at < 0).any():
                raise KeyError(f"no sketch for example(s) {[e for e, i in zip(example_ids, at) if i < 0][:5]}")
            return list(example_ids), X[at]
        return ids, X
