"""Results: the tables runs (what ran, when, how it ended), checkpoints (paths of finetuned
models), translations (hypotheses per checkpoint and eval set) and metrics.
"""

from __future__ import annotations

import uuid
from typing import Any

import pandas as pd

from gdig.store.schema import StoreBase, as_json, now


class ResultTables(StoreBase):
    # -- runs --------------------------------------------------------------------------------
    def start_run(self, kind: str, config: dict[str, Any] | None = None, config_hash: str | None = None) -> str:
        run_id = uuid.uuid4().hex[:12]
        self.con.execute(
            "INSERT INTO runs VALUES (?, ?, ?, ?, ?, NULL, 'running', NULL)",
            [run_id, kind, config_hash, as_json(config), now()],
        )
        return run_id

    def finish_run(self, run_id: str, status: str = "completed", message: str | None = None) -> None:
        self.con.execute(
            "UPDATE runs SET finished_at = ?, status = ?, message = ? WHERE run_id = ?",
            [now(), status, message, run_id],
        )

    # -- checkpoints -----------------------------------------------------------------------
    def add_checkpoint(
        self, checkpoint_id: str, kind: str, path: str, base: str | None = None,
        selection_id: str | None = None, meta: dict[str, Any] | None = None,
    ) -> None:
        self.con.execute(
            "INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?, ?, ?, ?)",
            [checkpoint_id, kind, str(path), base, selection_id, as_json(meta), now()],
        )

    def get_checkpoint(self, checkpoint_id: str) -> dict[str, Any] | None:
        return self._one("SELECT * FROM checkpoints WHERE checkpoint_id = ?", [checkpoint_id])

    # -- evaluation ----------------------------------------------------------------------------
    def add_translations(self, checkpoint_id: str, eval_set: str, df: pd.DataFrame) -> None:
        """df: example_id, hypothesis (and optional meta dicts)."""
        with self.transaction():
            self.con.execute(
                "DELETE FROM translations WHERE checkpoint_id = ? AND eval_set = ?", [checkpoint_id, eval_set]
            )
            out = pd.DataFrame({
                "checkpoint_id": checkpoint_id, "eval_set": eval_set,
                "example_id": df["example_id"], "hypothesis": df["hypothesis"],
                "meta": [as_json(m) for m in df["meta"]] if "meta" in df else None,
            })
            self._insert_df("translations", out)

    def translations(self, checkpoint_id: str, eval_set: str) -> pd.DataFrame:
        return self.con.execute(
            "SELECT t.example_id, t.hypothesis, e.src, e.tgt, "
            "TRY_CAST(json_extract(t.meta, '$.nll') AS DOUBLE) AS nll, "
            "TRY_CAST(json_extract(t.meta, '$.target_tokens') AS BIGINT) AS target_tokens FROM translations t "
            "JOIN examples e USING (example_id) "
            "JOIN dataset_examples m ON m.example_id = t.example_id AND m.dataset = t.eval_set "
            "WHERE t.checkpoint_id = ? AND t.eval_set = ? ORDER BY m.position",
            [checkpoint_id, eval_set],
        ).df()

    def translation_keys(self, checkpoint_id: str, eval_set: str) -> pd.DataFrame:
        """example_id, key (the settings the hypothesis was made with; None before keys were kept)."""
        return self.con.execute(
            "SELECT example_id, json_extract_string(meta, '$.key') AS key FROM translations "
            "WHERE checkpoint_id = ? AND eval_set = ?", [checkpoint_id, eval_set],
        ).df()

    def add_metric(
        self, checkpoint_id: str, eval_set: str, metric: str, value: float | None, signature: str | None,
        strategy: str | None = None, budget: int | None = None, selection_id: str | None = None,
    ) -> None:
        self.con.execute(
            "INSERT OR REPLACE INTO metrics VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [checkpoint_id, eval_set, metric, value, signature, strategy, budget, selection_id, now()],
        )

    def metrics(self) -> pd.DataFrame:
        return self.con.execute("SELECT * FROM metrics ORDER BY strategy, budget, eval_set, metric").df()
