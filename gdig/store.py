"""The DuckDB artifact store: schema, reads, writes.  No other module writes SQL.

One DuckDB file per workspace.  DuckDB allows a single writer process, so
distributed workers write Parquet/safetensors shards and the driver loads them
here.  Large binary artifacts (K-FAC factors, the candidate x seed matrix,
checkpoints) live as files beside the DB; the tables hold their paths and meta.

The schema is versioned: opening a DB written by a newer gdig is an error.
"""

from __future__ import annotations

import json
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import duckdb
import numpy as np
import pandas as pd

SCHEMA_VERSION = 2  # 2: prefilter verdicts, influence.grad_norm, selections.settings

# what an older store gains on open (version -> statements), so a workspace survives an upgrade;
# new tables come from the CREATE TABLE IF NOT EXISTS schema itself
_MIGRATIONS = {
    2: ["ALTER TABLE influence ADD COLUMN IF NOT EXISTS grad_norm DOUBLE",
        "ALTER TABLE selections ADD COLUMN IF NOT EXISTS settings JSON"],
}


class StoreError(RuntimeError):
    pass


_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_info (key VARCHAR PRIMARY KEY, value VARCHAR);

CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY, kind VARCHAR, config_hash VARCHAR, config JSON,
    started_at TIMESTAMP, finished_at TIMESTAMP, status VARCHAR, message VARCHAR);

-- one row per named dataset; role: candidates | seed | eval | selection
CREATE TABLE IF NOT EXISTS datasets (
    name VARCHAR PRIMARY KEY, role VARCHAR, src_lang VARCHAR, tgt_lang VARCHAR,
    n_rows INTEGER, n_duplicates INTEGER, n_rejected INTEGER, created_at TIMESTAMP);

-- files already loaded into a dataset: a second ingest of the same content is a no-op
CREATE TABLE IF NOT EXISTS ingested_files (
    dataset VARCHAR, path VARCHAR, content_hash VARCHAR, n_rows INTEGER, ingested_at TIMESTAMP,
    PRIMARY KEY (dataset, content_hash));

-- id = content hash of (src_lang, tgt_lang, src, tgt); one row per distinct pair
CREATE TABLE IF NOT EXISTS examples (
    example_id VARCHAR PRIMARY KEY, src_lang VARCHAR, tgt_lang VARCHAR, src VARCHAR, tgt VARCHAR);

-- membership: which examples a dataset holds, in input order; label = noise type or NULL
CREATE TABLE IF NOT EXISTS dataset_examples (
    dataset VARCHAR, example_id VARCHAR, position INTEGER, source_file VARCHAR,
    source_row INTEGER, label VARCHAR, PRIMARY KEY (dataset, example_id));

CREATE TABLE IF NOT EXISTS rejects (
    dataset VARCHAR, source_file VARCHAR, source_row INTEGER, reason VARCHAR, raw VARCHAR,
    created_at TIMESTAMP);

-- prefilter verdicts: one row per dataset row and config signature; rule = first failing
-- check (NULL: passed), figure = its measured value, figures = every check's value (JSON)
CREATE TABLE IF NOT EXISTS prefilter (
    dataset VARCHAR, signature VARCHAR, example_id VARCHAR, passed BOOLEAN, rule VARCHAR,
    figure DOUBLE, figures JSON, created_at TIMESTAMP, PRIMARY KEY (dataset, signature, example_id));

CREATE TABLE IF NOT EXISTS checkpoints (
    checkpoint_id VARCHAR PRIMARY KEY, kind VARCHAR, path VARCHAR, base VARCHAR,
    selection_id VARCHAR, meta JSON, created_at TIMESTAMP);

CREATE TABLE IF NOT EXISTS curvature (
    curvature_id VARCHAR PRIMARY KEY, checkpoint_id VARCHAR, strategy VARCHAR,
    granularity VARCHAR, modules JSON, n_examples INTEGER, n_tokens BIGINT, path VARCHAR,
    meta JSON, created_at TIMESTAMP);

-- one scoring = curvature x seed products x candidate dataset
CREATE TABLE IF NOT EXISTS scorings (
    scoring_id VARCHAR PRIMARY KEY, curvature_id VARCHAR, seed_dataset VARCHAR,
    candidate_dataset VARCHAR, n_candidates INTEGER, n_seeds INTEGER, matrix_path VARCHAR,
    meta JSON, created_at TIMESTAMP);

CREATE TABLE IF NOT EXISTS influence (
    scoring_id VARCHAR, example_id VARCHAR, position INTEGER, loss DOUBLE,
    helped_fraction DOUBLE, mean DOUBLE, min DOUBLE, max DOUBLE, grad_norm DOUBLE,
    PRIMARY KEY (scoring_id, example_id));

CREATE TABLE IF NOT EXISTS sketches (
    scoring_id VARCHAR, example_id VARCHAR, sketch FLOAT[], PRIMARY KEY (scoring_id, example_id));

CREATE TABLE IF NOT EXISTS clusters (
    clustering_id VARCHAR, scoring_id VARCHAR, example_id VARCHAR, cluster INTEGER,
    distance DOUBLE, PRIMARY KEY (clustering_id, example_id));

-- reason: quality | filled | random | diversity | full
CREATE TABLE IF NOT EXISTS selections (
    selection_id VARCHAR, strategy VARCHAR, budget INTEGER, example_id VARCHAR, rank INTEGER,
    reason VARCHAR, cluster INTEGER, scoring_id VARCHAR, created_at TIMESTAMP, settings JSON,
    PRIMARY KEY (selection_id, example_id));

CREATE TABLE IF NOT EXISTS translations (
    checkpoint_id VARCHAR, eval_set VARCHAR, example_id VARCHAR, hypothesis VARCHAR,
    meta JSON, PRIMARY KEY (checkpoint_id, eval_set, example_id));

CREATE TABLE IF NOT EXISTS metrics (
    checkpoint_id VARCHAR, eval_set VARCHAR, metric VARCHAR, value DOUBLE, signature VARCHAR,
    strategy VARCHAR, budget INTEGER, selection_id VARCHAR, created_at TIMESTAMP,
    PRIMARY KEY (checkpoint_id, eval_set, metric));
"""

TABLES = (
    "runs", "datasets", "ingested_files", "examples", "dataset_examples", "rejects", "prefilter",
    "checkpoints", "curvature", "scorings", "influence", "sketches", "clusters",
    "selections", "translations", "metrics",
)


def now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, default=str)


class Store:
    """A handle on one workspace DB.  Use as a context manager or call close()."""

    def __init__(self, path: str | Path, read_only: bool = False):
        self.path = Path(path)
        if read_only and not self.path.exists():
            raise StoreError(f"{self.path}: no gdig store here")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.IOException as err:
            raise StoreError(f"{self.path}: cannot open the store ({err}); another process may hold it") from None
        try:
            self._check_or_create_schema(read_only)
        except BaseException:
            self.close()
            raise

    # -- lifecycle ---------------------------------------------------------------------
    def _check_or_create_schema(self, read_only: bool) -> None:
        has_info = self.con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_info'"
        ).fetchone()[0]
        if has_info:
            row = self.con.execute("SELECT value FROM schema_info WHERE key = 'version'").fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path}: store schema version {version} is newer than this gdig "
                    f"supports ({SCHEMA_VERSION}); upgrade gdig"
                )
            if version == SCHEMA_VERSION or read_only:
                return
        if read_only:
            raise StoreError(f"{self.path}: not a gdig store (no schema)")
        with self.transaction():
            self.con.execute(_SCHEMA)
            if has_info:
                for v in range(version + 1, SCHEMA_VERSION + 1):
                    for sql in _MIGRATIONS.get(v, []):
                        self.con.execute(sql)
            self.con.execute(
                "INSERT OR REPLACE INTO schema_info VALUES ('version', ?)", [str(SCHEMA_VERSION)]
            )

    def close(self) -> None:
        """Close the connection and drop it: a Store still referenced after a failure (by a
        traceback, a Prefect state) then holds no DuckDB object, so none is alive at exit."""
        con, self.con = getattr(self, "con", None), None
        if con is not None:
            con.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All or nothing: an exception inside rolls every write back."""
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    # -- generic ---------------------------------------------------------------------------
    def _insert_df(self, table: str, df: pd.DataFrame, replace: bool = False) -> None:
        if df is None or len(df) == 0:
            return
        cols = ", ".join(f'"{c}"' for c in df.columns)
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        self.con.complete()  # DuckDB 2 refuses register() while a fetchone() result is pending
        self.con.register("_gdig_df", df)
        try:
            self.con.execute(f"{verb} INTO {table} ({cols}) SELECT {cols} FROM _gdig_df")
        finally:
            self.con.unregister("_gdig_df")

    def table(self, name: str) -> pd.DataFrame:
        """A whole table as a DataFrame (for reports and debugging)."""
        if name not in TABLES:
            raise StoreError(f"unknown table {name!r}; tables: {', '.join(TABLES)}")
        return self.con.execute(f"SELECT * FROM {name}").df()

    def count(self, name: str) -> int:
        if name not in TABLES:
            raise StoreError(f"unknown table {name!r}")
        return self.con.execute(f"SELECT count(*) FROM {name}").fetchone()[0]

    def _one(self, sql: str, params: list[Any]) -> dict[str, Any] | None:
        cur = self.con.execute(sql, params)
        row = cur.fetchone()
        if row is None:
            return None
        out = dict(zip([d[0] for d in cur.description], row))
        for k in ("meta", "modules", "config"):
            if isinstance(out.get(k), str):
                out[k] = json.loads(out[k])
        return out

    # -- runs --------------------------------------------------------------------------------
    def start_run(self, kind: str, config: dict[str, Any] | None = None, config_hash: str | None = None) -> str:
        run_id = uuid.uuid4().hex[:12]
        self.con.execute(
            "INSERT INTO runs VALUES (?, ?, ?, ?, ?, NULL, 'running', NULL)",
            [run_id, kind, config_hash, _json(config), now()],
        )
        return run_id

    def finish_run(self, run_id: str, status: str = "completed", message: str | None = None) -> None:
        self.con.execute(
            "UPDATE runs SET finished_at = ?, status = ?, message = ? WHERE run_id = ?",
            [now(), status, message, run_id],
        )

    # -- datasets and examples -----------------------------------------------------------
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
        rows = rows.copy()
        if "label" not in rows:
            rows["label"] = None
        existing = self.get_dataset(dataset)
        if existing and (existing["role"], existing["src_lang"], existing["tgt_lang"]) != (role, src_lang, tgt_lang):
            raise StoreError(
                f"dataset {dataset!r} exists as role={existing['role']} "
                f"{existing['src_lang']}-{existing['tgt_lang']}; cannot add {role} {src_lang}-{tgt_lang} rows"
            )
        with self.transaction():
            if replace and existing:
                for table in ("dataset_examples", "rejects", "ingested_files"):
                    self.con.execute(f"DELETE FROM {table} WHERE dataset = ?", [dataset])
                self.con.execute("DELETE FROM datasets WHERE name = ?", [dataset])
                existing = None
            start = 0
            if existing:
                start = self.con.execute(
                    "SELECT coalesce(max(position) + 1, 0) FROM dataset_examples WHERE dataset = ?", [dataset]
                ).fetchone()[0]
                known = set(self.con.execute(
                    "SELECT example_id FROM dataset_examples WHERE dataset = ?", [dataset]
                ).df()["example_id"])
            else:
                known = set()
            first = ~rows["example_id"].duplicated(keep="first") & ~rows["example_id"].isin(known)
            new = rows[first].reset_index(drop=True)
            n_dup = int(len(rows) - len(new))
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
            n_rej = 0
            if rejects is not None and len(rejects):
                rj = rejects[["source_file", "source_row", "reason", "raw"]].copy()
                rj.insert(0, "dataset", dataset)
                rj["created_at"] = now()
                self._insert_df("rejects", rj)
                n_rej = len(rj)
            if existing:
                self.con.execute(
                    "UPDATE datasets SET n_rows = n_rows + ?, n_duplicates = n_duplicates + ?, "
                    "n_rejected = n_rejected + ? WHERE name = ?",
                    [len(new), n_dup, n_rej, dataset],
                )
            else:
                self.con.execute(
                    "INSERT INTO datasets VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [dataset, role, src_lang, tgt_lang, len(new), n_dup, n_rej, now()],
                )
            for path, content_hash, n in files:
                self.con.execute(
                    "INSERT OR REPLACE INTO ingested_files VALUES (?, ?, ?, ?, ?)",
                    [dataset, path, content_hash, n, now()],
                )
        return {"added": len(new), "duplicates": n_dup, "rejected": n_rej}

    def dataset_examples(self, name: str) -> pd.DataFrame:
        """Examples of a dataset in input order: example_id, position, label, src_lang, tgt_lang, src, tgt."""
        if self.get_dataset(name) is None:
            raise StoreError(f"no dataset named {name!r} in {self.path}")
        return self.con.execute(
            "SELECT m.example_id, m.position, m.label, m.source_file, m.source_row, "
            "e.src_lang, e.tgt_lang, e.src, e.tgt "
            "FROM dataset_examples m JOIN examples e USING (example_id) "
            "WHERE m.dataset = ? ORDER BY m.position",
            [name],
        ).df()

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

    # -- prefilter --------------------------------------------------------------------------
    def add_prefilter(self, dataset: str, signature: str, decisions: pd.DataFrame) -> None:
        """Load the verdicts of one prefilter run (replaces an earlier load of the same signature).

        decisions: example_id, passed, rule, figure, and one column per check (its figure;
        NaN = not judged), as gdig.prefilter.prefilter_rows returns them.
        """
        if self.get_dataset(dataset) is None:
            raise StoreError(f"no dataset named {dataset!r} in {self.path}")
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

    def prefilter_counts(self, dataset: str, signature: str) -> pd.DataFrame:
        """Rejected rows per rule (most first): rule, n."""
        return self.con.execute(
            "SELECT rule, count(*) AS n FROM prefilter WHERE dataset = ? AND signature = ? AND NOT passed "
            "GROUP BY rule ORDER BY n DESC, rule",
            [dataset, signature],
        ).df()

    # -- identity, key/value info and id lists (used for content-hash cache keys) ------------
    def info(self, key: str) -> str | None:
        """A value kept in schema_info (a small key/value table), or None."""
        row = self.con.execute("SELECT value FROM schema_info WHERE key = ?", [key]).fetchone()
        return None if row is None else row[0]

    def set_info(self, key: str, value: str) -> None:
        if key == "version":
            raise StoreError("schema_info 'version' is managed by the store")
        self.con.execute("INSERT OR REPLACE INTO schema_info VALUES (?, ?)", [key, value])

    def store_id(self) -> str:
        """A random id made the first time it is asked for: cache keys include it, so a fresh DB
        at the same path never reuses results computed against an older one."""
        sid = self.info("store_id")
        if sid is None:
            sid = uuid.uuid4().hex
            self.set_info("store_id", sid)
        return sid

    def dataset_ids(self, name: str) -> list[str]:
        """Example ids of a dataset in input order (no text): cheap content fingerprints."""
        if self.get_dataset(name) is None:
            raise StoreError(f"no dataset named {name!r} in {self.path}")
        return self.con.execute(
            "SELECT example_id FROM dataset_examples WHERE dataset = ? ORDER BY position", [name]
        ).df()["example_id"].tolist()

    # -- checkpoints -----------------------------------------------------------------------
    def add_checkpoint(
        self, checkpoint_id: str, kind: str, path: str, base: str | None = None,
        selection_id: str | None = None, meta: dict[str, Any] | None = None,
    ) -> None:
        self.con.execute(
            "INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?, ?, ?, ?)",
            [checkpoint_id, kind, str(path), base, selection_id, _json(meta), now()],
        )

    def get_checkpoint(self, checkpoint_id: str) -> dict[str, Any] | None:
        return self._one("SELECT * FROM checkpoints WHERE checkpoint_id = ?", [checkpoint_id])

    # -- curvature ----------------------------------------------------------------------------
    def add_curvature(
        self, curvature_id: str, *, checkpoint_id: str, strategy: str, granularity: str,
        modules: list[str], n_examples: int, n_tokens: int, path: str, meta: dict[str, Any] | None = None,
    ) -> None:
        self.con.execute(
            "INSERT OR REPLACE INTO curvature VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [curvature_id, checkpoint_id, strategy, granularity, _json(modules), n_examples,
             n_tokens, str(path), _json(meta), now()],
        )

    def get_curvature(self, curvature_id: str) -> dict[str, Any] | None:
        return self._one("SELECT * FROM curvature WHERE curvature_id = ?", [curvature_id])

    # -- influence --------------------------------------------------------------------------
    def add_scoring(
        self, scoring_id: str, *, curvature_id: str, seed_dataset: str, candidate_dataset: str,
        aggregates: pd.DataFrame, sketches: pd.DataFrame | None, matrix_path: str | None,
        n_seeds: int, meta: dict[str, Any] | None = None,
    ) -> None:
        """Load one merged scoring in one transaction (replaces a previous load of the same id).

        aggregates: example_id, position, loss, helped_fraction, mean, min, max.
        sketches: example_id, sketch (list of float32).
        """
        with self.transaction():
            for t in ("influence", "sketches"):
                self.con.execute(f"DELETE FROM {t} WHERE scoring_id = ?", [scoring_id])
            agg = aggregates[["example_id", "position", "loss", "helped_fraction", "mean", "min", "max"]].copy()
            agg["grad_norm"] = aggregates["grad_norm"] if "grad_norm" in aggregates else np.nan
            agg.insert(0, "scoring_id", scoring_id)
            self._insert_df("influence", agg)
            if sketches is not None and len(sketches):
                sk = pd.DataFrame({
                    "scoring_id": scoring_id,
                    "example_id": sketches["example_id"],
                    "sketch": [np.asarray(s, dtype=np.float32).tolist() for s in sketches["sketch"]],
                })
                self._insert_df("sketches", sk)
            self.con.execute(
                "INSERT OR REPLACE INTO scorings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [scoring_id, curvature_id, seed_dataset, candidate_dataset, len(agg), n_seeds,
                 matrix_path, _json(meta), now()],
            )

    def get_scoring(self, scoring_id: str) -> dict[str, Any] | None:
        return self._one("SELECT * FROM scorings WHERE scoring_id = ?", [scoring_id])

    def influence(self, scoring_id: str) -> pd.DataFrame:
        """Per-candidate aggregates joined with label (noise type, when known), in pool order."""
        sc = self.get_scoring(scoring_id)
        if sc is None:
            raise StoreError(f"no scoring {scoring_id!r} in {self.path}")
        return self.con.execute(
            "SELECT i.example_id, i.position, i.loss, i.helped_fraction, i.mean, i.min, i.max, i.grad_norm, m.label "
            "FROM influence i LEFT JOIN dataset_examples m "
            "ON m.example_id = i.example_id AND m.dataset = ? "
            "WHERE i.scoring_id = ? ORDER BY i.position",
            [sc["candidate_dataset"], scoring_id],
        ).df()

    def sketches(self, scoring_id: str, example_ids: list[str] | None = None) -> tuple[list[str], np.ndarray]:
        """(example_ids, matrix [n, d] float32) in pool order, optionally restricted."""
        df = self.con.execute(
            "SELECT s.example_id, s.sketch FROM sketches s JOIN influence i USING (scoring_id, example_id) "
            "WHERE s.scoring_id = ? ORDER BY i.position",
            [scoring_id],
        ).df()
        if example_ids is not None:
            df = df.set_index("example_id").loc[list(example_ids)].reset_index()
        if len(df) == 0:
            return [], np.zeros((0, 0), dtype=np.float32)
        return list(df["example_id"]), np.stack([np.asarray(s, dtype=np.float32) for s in df["sketch"]])

    # -- clusters and selections -------------------------------------------------------------
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
            out["settings"] = _json(settings)
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
                "meta": [_json(m) for m in df["meta"]] if "meta" in df else None,
            })
            self._insert_df("translations", out)

    def translations(self, checkpoint_id: str, eval_set: str) -> pd.DataFrame:
        return self.con.execute(
            "SELECT t.example_id, t.hypothesis, e.src, e.tgt FROM translations t "
            "JOIN examples e USING (example_id) "
            "JOIN dataset_examples m ON m.example_id = t.example_id AND m.dataset = t.eval_set "
            "WHERE t.checkpoint_id = ? AND t.eval_set = ? ORDER BY m.position",
            [checkpoint_id, eval_set],
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
