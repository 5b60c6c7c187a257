"""Schema and transactions: the DDL, its version and migrations, the connection (one writer:
a second process gets a clear "another process holds it" error, which a task retry may
fix), transactions, generic table access and the store's identity.

Every domain module (datasets, prefilter, influence, selections, results) extends StoreBase
with the reads and writes of its own tables; gdig.store.Store combines them.
"""

from __future__ import annotations

import json
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Self

import duckdb
import pandas as pd

from gdig import faults
from gdig.errors import StoreError
from gdig.store import integrity

# 2: prefilter verdicts, influence.grad_norm, selections.settings; 3: influence.closing_loss;
# 4: table source_free_loss (created by the schema itself on the upgrade)
SCHEMA_VERSION = 4

# what an older store gains on open (version -> statements), so a workspace survives an upgrade;
# new tables come from the CREATE TABLE IF NOT EXISTS schema itself
_MIGRATIONS = {
    2: ["ALTER TABLE influence ADD COLUMN IF NOT EXISTS grad_norm DOUBLE",
        "ALTER TABLE selections ADD COLUMN IF NOT EXISTS settings JSON"],
    3: ["ALTER TABLE influence ADD COLUMN IF NOT EXISTS closing_loss DOUBLE"],
}


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
    helped_fraction DOUBLE, mean DOUBLE, min DOUBLE, max DOUBLE, grad_norm DOUBLE, closing_loss DOUBLE,
    PRIMARY KEY (scoring_id, example_id));

-- the target's loss with the source left out of the prompt, per checkpoint and prompt settings
-- (selection.source_gain_min); filled as batches finish, so an interrupted pass resumes
CREATE TABLE IF NOT EXISTS source_free_loss (
    checkpoint_id VARCHAR, prompt_key VARCHAR, example_id VARCHAR, loss DOUBLE,
    PRIMARY KEY (checkpoint_id, prompt_key, example_id));

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
    "checkpoints", "curvature", "scorings", "influence", "source_free_loss", "sketches", "clusters",
    "selections", "translations", "metrics",
)


def now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def as_json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, default=str)



class StoreBase:
    """A handle on one workspace DB.  Use as a context manager or call close()."""

    def __init__(self, path: str | Path, read_only: bool = False):
        self.path = Path(path)
        self.read_only = read_only
        if read_only and not self.path.exists():
            raise StoreError(f"{self.path}: no gdig store here")
        integrity.check_header(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:  # no extension autoloading: a foreign file must not make DuckDB fetch a reader for it
            self.con = duckdb.connect(str(self.path), read_only=read_only,
                                      config={"autoload_known_extensions": False,
                                              "autoinstall_known_extensions": False})
        except duckdb.Error as err:
            raise integrity.on_open_error(self.path, err) from None
        try:
            if not integrity.unchanged_since_close(self.path):
                integrity.scan(self.con, self.path)
            if not read_only:
                integrity.forget_close(self.path)  # recorded again by close(); a kill leaves none
            self._check_or_create_schema(read_only)
        except duckdb.Error as err:
            self._drop()
            raise integrity.on_open_error(self.path, err) from None
        except BaseException:
            self._drop()
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
        tables = [] if has_info else integrity.foreign_tables(self.con)
        if tables:  # someone else's DuckDB database: never add gdig's tables to it
            raise integrity.damaged(self.path, f"a DuckDB database but not a gdig store (tables: "
                                               f"{', '.join(tables[:5])}{', ...' if len(tables) > 5 else ''})")
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
            if not self.read_only:
                integrity.record_close(self.path)

    def _drop(self) -> None:
        """Close without recording the file as sound (it failed its checks)."""
        con, self.con = getattr(self, "con", None), None
        if con is not None:
            con.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is not None and integrity.is_damage(exc):  # a bad block met mid-run: one line, exit 2
            self._drop()
            raise integrity.damaged(self.path, f"the store is damaged: {integrity.first_line(str(exc))}") from exc
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All or nothing: an exception inside rolls every write back."""
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield
            faults.reached("store commit")  # the writes made, not committed (the fault harness)
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    # -- generic ---------------------------------------------------------------------------
    def _insert_df(self, table: str, df: pd.DataFrame, replace: bool = False) -> None:
        """Insert a DataFrame or an Arrow table (its columns by name)."""
        if df is None or len(df) == 0:
            return
        names = df.column_names if hasattr(df, "column_names") else df.columns
        cols = ", ".join(f'"{c}"' for c in names)
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

    # -- identity and key/value info (used for content-hash cache keys) ----------------------
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
