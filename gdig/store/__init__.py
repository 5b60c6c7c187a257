"""The DuckDB artifact store: schema, reads, writes.  No other module writes SQL.

One DuckDB file per workspace.  DuckDB allows a single writer process, so
distributed workers write Parquet/safetensors shards and the driver loads them
here.  Large binary artifacts (K-FAC factors, the candidate x seed matrix,
checkpoints) live as files beside the DB; the tables hold their paths and meta.

The schema is versioned: opening a DB written by a newer gdig is an error.

One module per domain, each a class over its own tables on the shared connection:
schema (DDL, versions, migrations, connection, transactions, identity), datasets (rows,
duplicates, rejects), prefilter (verdicts on a dataset's rows), influence (curvature,
scorings, aggregates, sketches), selections (clusters, selections), results (runs,
checkpoints, translations, metrics).  Store is all of them on one connection.
"""

from gdig.store.influence import InfluenceTables
from gdig.store.prefilter import PrefilterTables
from gdig.store.results import ResultTables
from gdig.store.schema import SCHEMA_VERSION, TABLES, StoreError, now
from gdig.store.selections import SelectionTables

__all__ = ["SCHEMA_VERSION", "TABLES", "Store", "StoreError", "now"]


# PrefilterTables extends DatasetTables, so the dataset methods come with it
class Store(PrefilterTables, InfluenceTables, SelectionTables, ResultTables):
    """A handle on one workspace DB.  Use as a context manager or call close()."""
