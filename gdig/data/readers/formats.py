"""The input formats, one entry each: its name (the `format` of a data source), the reader, the
file suffixes that name it and how its content is recognised when the suffix does not.

A new format is one entry here (and its reader module).  resolve.open_source takes a path to a
format from this table; rows.read_rows reads a Source with its entry's reader; the config's
`format` choices are its names.  `gdig` and `hf` are not readers but object schemas forced on
JSON files (records.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

from gdig.data.readers.common import Row, Source
from gdig.data.readers.hf_datasets import read_disk, read_hub
from gdig.data.readers.jsonfile import read_json, read_jsonl
from gdig.data.readers.moses import read_moses
from gdig.data.readers.tsv import read_tsv


@dataclass(frozen=True)
class Format:
    name: str
    read: Callable[[Source, tuple[str, str] | None], Iterator[Row]] | None  # None: a schema of JSON objects
    suffixes: tuple[str, ...] = ()  # file suffixes (lowercase) that name it
    sniff: Callable[[str], bool] | None = None  # the start of a text file of no known suffix -> is it this format
    schema: bool = False  # forces the object schema of a JSON file (records.py)


READERS: dict[str, Format] = {f.name: f for f in (
    Format("jsonl", read_jsonl, (".jsonl", ".ndjson"), lambda head: head.startswith("{")),
    Format("json", read_json, (".json",), lambda head: head.startswith("[")),
    Format("gdig", None, schema=True),
    Format("hf", None, schema=True),
    Format("tsv", read_tsv, (".tsv", ".tab"), lambda head: "\t" in head.split("\n", 1)[0]),
    Format("moses", read_moses),
    Format("disk", read_disk),
    Format("hub", read_hub),
)}
FORMATS = ("auto", *READERS)
SCHEMAS = tuple(name for name, f in READERS.items() if f.schema)
JSON_FORMATS = ("jsonl", "json")  # the formats a forced schema applies to


def by_suffix(suffix: str) -> str | None:
    """The format a file suffix names (None: none does)."""
    return next((name for name, f in READERS.items() if suffix.lower() in f.suffixes), None)


def by_content(head: str) -> str | None:
    """The format whose content the start of a text file looks like (None: none)."""
    return next((name for name, f in READERS.items() if f.sniff is not None and f.sniff(head)), None)
