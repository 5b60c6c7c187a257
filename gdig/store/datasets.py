"""Datasets and their rows: the tables datasets, ingested_files, examples, dataset_examples
and rejects.

Which incoming rows are new is decided by gdig.data.dedup.row_fates (pure); add_rows reads
what the dataset holds, asks it, and writes the outcome, all in one transaction.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from gdig.data.dedup import row_fates
from gdig.store.schema import StoreBase, StoreError, now


class DatasetTables(StoreBase):
    # -- reads -----------------------------------------------------------------------------
    def get_dataset(self, name: str) -> dict[str, Any] | None:
        return self._one("SELECT * FROM datasets WHERE name = ?", [name])

    def datasets(self, role: str | None = None) -> pd.DataFrame:
        if role is None:
            return self.con.execute("SELECT * FROM datasets ORDER BY created_at, name").df()
        return self.con.execute(
            "SELECT * FROM datasets WHERE role = ? ORDER BY created_at, name", [role]
        ).df()

    def file_ingested(self, dataset: str, content_hash: str) -> bool:
        return bool(self.con.execute(
            "SELECT count(*) FROM ingested_files WHERE dataset = ? AND content_hash = ?",
            [dataset, content_hash],
        ).fetchone()[0])

    def ingested_hashes(self, dataset: str) -> list[str]:
        """Content hashes of the files loaded into a dataset, in the order they were loaded."""
        return list(self.con.execute(
            "SELECT content_hash FROM ingested_files WHERE dataset = ? ORDER BY ingested_at, rowid",
            [dataset],
        ).df()["content_hash"])

    def _require_dataset(self, name: str) -> dict[str, Any]:
        ds = self.get_dataset(name)
        if ds is None:
            raise StoreError(f"no dataset named {name!r} in {self.path}")
        return ds

    def dataset_examples(self, name: str) -> pd.DataFrame:
        """Examples of a dataset in input order: example_id, position, label, src_lang, tgt_lang, src, tgt."""
        self._require_dataset(name)
        return self.con.execute(
            "SELECT m.example_id, m.position, m.label, m.source_file, m.source_row, "
            "e.src_lang, e.tgt_lang, e.src, e.tgt "
            "FROM dataset_examples m JOIN examples e USING (example_id) "
            "WHERE m.dataset = ? ORDER BY m.position",
            [name],
        ).df()

    def dataset_ids(self, name: str) -> list[str]:
        """Example ids of a dataset in input order (no text): cheap content fingerprints."""
        self._require_dataset(name)
        return self.con.execute(
            "SELECT example_id FROM dataset_examples WHERE dataset = ? ORDER BY position", [name]
        ).df()["example_id"].tolist()

    def examples_by_id(self, example_ids: list[str]) -> pd.DataFrame:
        ids = pd.DataFrame({"example_id": list(example_ids), "_order": range(len(example_ids))})
        self.con.complete()  # see _insert_df
        self.con.register("_gdig_ids", ids)
        try:
            return self.con.execute(
                "SELECT e.* FROM _gdig_ids i JOIN examples e USING (example_id) ORDER BY i._order"
            ).df()
        finally:
            self.con.unregister("_gdig_ids")

    def rejects(self, dataset: str | None = None) -> pd.DataFrame:
        if dataset is None:
            return self.con.execute("SELECT * FROM rejects ORDER BY dataset, source_file, source_row").df()
        return self.con.execute(
            "SELECT * FROM rejects WHERE dataset = ? ORDER BY source_file, source_row", [dataset]
        ).df()

    # -- add_rows ------------------------------------------------------------------------------
    def add_rows(
        self,
        *,
        dataset: str,
        role: str,
        src_lang: str,
        tgt_lang: str,
        rows: pd.DataFrame,
        rejects: pd.DataFrame | None = None,
        files: list[tuple[str, str, int]] = (),
        replace: bool = False,
    ) -> dict[str, int]:
        """Append rows to a dataset in ONE transaction (replace: the dataset's rows, rejects and
        file records are dropped first, so it holds exactly these rows).

        rows: columns example_id, src_lang, tgt_lang, src, tgt, source_file, source_row,
        label (optional).  Rows whose example is already in the dataset count as
        duplicates and are kept once.  rejects: source_file, source_row, reason, raw.
        files: (path, content_hash, n_rows) recorded for idempotent re-ingest.
        Returns counts: added, duplicates, rejected.
        """
        if "label" not in rows:
            rows = rows.assign(label=None)
        existing = self._dataset_as(dataset, role, src_lang, tgt_lang)
        with self.transaction():
            if replace and existing:
                self._drop_dataset(dataset)
                existing = None
            stored, start = self._members(dataset) if existing else (set(), 0)
            fates = row_fates(rows["example_id"], stored)
            new = rows[fates.new].reset_index(drop=True)
            self._write_examples(dataset, new, start)
            n_rej = self._write_rejects(dataset, rejects)
            counts = (len(new), fates.n_duplicates, n_rej)
            if existing:
                self.con.execute(
                    "UPDATE datasets SET n_rows = n_rows + ?, n_duplicates = n_duplicates + ?, "
                    "n_rejected = n_rejected + ? WHERE name = ?", [*counts, dataset],
                )
            else:
                self.con.execute("INSERT INTO datasets VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                 [dataset, role, src_lang, tgt_lang, *counts, now()])
            for path, content_hash, n in files:
                self.con.execute("INSERT OR REPLACE INTO ingested_files VALUES (?, ?, ?, ?, ?)",
                                 [dataset, path, content_hash, n, now()])
        return dict(zip(("added", "duplicates", "rejected"), counts))

    def _dataset_as(self, dataset: str, role: str, src_lang: str, tgt_lang: str) -> dict[str, Any] | None:
        """The dataset's record, or None; an error when it exists with another role or pair."""
        existing = self.get_dataset(dataset)
        if existing and (existing["role"], existing["src_lang"], existing["tgt_lang"]) != (role, src_lang, tgt_lang):
            raise StoreError(
                f"dataset {dataset!r} exists as role={existing['role']} "
                f"{existing['src_lang']}-{existing['tgt_lang']}; cannot add {role} {src_lang}-{tgt_lang} rows"
            )
        return existing

    def _drop_dataset(self, dataset: str) -> None:
        """Forget a dataset's rows, rejects and files (examples stay: other datasets share them)."""
        for table in ("dataset_examples", "rejects", "ingested_files"):
            self.con.execute(f"DELETE FROM {table} WHERE dataset = ?", [dataset])
        self.con.execute("DELETE FROM datasets WHERE name = ?", [dataset])

    def _members(self, dataset: str) -> tuple[set[str], int]:
        """The ids a dataset holds and the position its next row gets."""
        start = self.con.execute(
            "SELECT coalesce(max(position) + 1, 0) FROM dataset_examples WHERE dataset = ?", [dataset]
        ).fetchone()[0]
        stored = set(self.con.execute(
            "SELECT example_id FROM dataset_examples WHERE dataset = ?", [dataset]
        ).df()["example_id"])
        return stored, start

    def _write_examples(self, dataset: str, new: pd.DataFrame, start: int) -> None:
        """Write rows the dataset does not hold yet, at positions start, start + 1, ..."""
        self._insert_df(
            "examples", new[["example_id", "src_lang", "tgt_lang", "src", "tgt"]], replace=True
        )
        members = pd.DataFrame({
            "dataset": dataset,
            "example_id": new["example_id"],
            "position": np.arange(start, start + len(new), dtype=np.int64),
            "source_file": new["source_file"],
            "source_row": new["source_row"].astype("int64"),
            "label": new["label"].astype(object),
        })
        self._insert_df("dataset_examples", members)

    def _write_rejects(self, dataset: str, rejects: pd.DataFrame | None) -> int:
        if rejects is None or not len(rejects):
            return 0
        rj = rejects[["source_file", "source_row", "reason", "raw"]].copy()
        rj.insert(0, "dataset", dataset)
        rj["created_at"] = now()
        self._insert_df("rejects", rj)
        return len(rj)
