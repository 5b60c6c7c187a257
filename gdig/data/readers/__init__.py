"""Readers for parallel data: one `Row` per input row, problems attached, nothing dropped.

Formats (``fmt``; "auto" guesses from the path and the content), one module each:

- ``jsonl`` / ``json`` (jsonfile): JSON lines or a JSON list of objects.  The object schema
  is detected from the first object (records): ``src``/``tgt`` (+ optional
  ``src_lang``/``tgt_lang``, ``label``), the reference G-DIG schema (``src_lang, trg_lang,
  src_text, trg_text``, languages as names like "German"), or Hugging Face translation rows
  (``{"translation": {"de": ..., "en": ...}}``).  ``gdig`` / ``hf`` force a schema.
- ``tsv`` (tsv): two tab-separated columns, source then target (an optional ``src\\ttgt`` header).
- ``moses`` (moses): two plain-text files ``x.de`` + ``x.en`` with one segment per line; the
  path is the prefix ``x`` or either file.
- ``disk`` (hf_datasets): a directory written by ``datasets.save_to_disk`` (``split`` picks one
  of a DatasetDict), with src/tgt columns, G-DIG columns or a ``translation`` column.
- ``hub`` (hf_datasets): ``hf:<name>`` or ``hf:<name>:<config>``, loaded with
  ``datasets.load_dataset``.

Formats that carry both languages without a direction (translation rows, Moses pairs)
take the direction from the caller's ``src_lang``/``tgt_lang``.

Files are read as bytes and decoded per line, so one bad line is one reject, not a
failed file.  Problems that concern the whole file (empty, not what its extension
says) come out as a Row with row number 0.  formats: the table of formats (name, reader,
suffixes, sniffing); common: Row, Source, ReadError and the
whole-file checks; resolve: a path to a Source; rows: reading and content hashes.
"""

from gdig.data.readers.common import ReadError, Row, Source
from gdig.data.readers.formats import FORMATS
from gdig.data.readers.records import detect_schema
from gdig.data.readers.resolve import open_source
from gdig.data.readers.rows import content_hash, read_rows

__all__ = ["FORMATS", "ReadError", "Row", "Source", "content_hash", "detect_schema", "open_source",
           "read_rows"]
