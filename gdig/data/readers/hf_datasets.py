"""Hugging Face ``datasets``: a ``save_to_disk`` directory (format ``disk``) or a hub dataset
(``hf:<name>[:<config>]``, format ``hub``); ``datasets`` is imported only when one is read."""

from __future__ import annotations

import json
import os
from typing import Any, Iterable, Iterator

from gdig.data import validate as V
from gdig.data.readers.common import ReadError, Row, Source
from gdig.data.readers.records import RecordParser


def _read_records(path: str, records: Iterable[dict[str, Any]], schema, direction) -> Iterator[Row]:
    parser = RecordParser(path, schema, direction)
    for n, rec in enumerate(records, start=1):
        yield parser.row(n, rec, json.dumps(rec, ensure_ascii=False, default=str))


def _pick_split(obj, split: str | None, where: str):
    from datasets import DatasetDict

    if isinstance(obj, DatasetDict):
        if split is None:
            if len(obj) == 1:
                return next(iter(obj.values()))
            raise ReadError(f"{where}: holds splits {', '.join(obj)}; choose one (split / --split)")
        if split not in obj:
            raise ReadError(f"{where}: no split {split!r}; splits: {', '.join(obj)}")
        return obj[split]
    return obj


def read_disk(source: Source, direction) -> Iterator[Row]:
    from datasets import load_from_disk

    try:
        ds = load_from_disk(source.path)
    except Exception as err:  # datasets raises several types for a bad directory
        raise ReadError(f"{source.path}: cannot load a saved dataset: {err}") from None
    ds = _pick_split(ds, source.split, source.path)
    if len(ds) == 0:
        yield Row(source.path, 0, None, None, None, None, None, "", V.EMPTY_FILE)
        return
    yield from _read_records(source.path, ds, source.schema, direction)


def _load_hub(source: Source):
    import datasets

    try:
        return datasets.load_dataset(source.hub_name, source.hub_config, split=source.split)
    except Exception as err:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1"
        raise ReadError(
            f"{source.path}: cannot load hub dataset {source.hub_name!r}: the network / Hugging Face hub "
            f"is not reachable{' (HF_HUB_OFFLINE=1)' if offline else ''} or the dataset does not exist "
            f"({type(err).__name__}: {str(err)[:200]}). Where the network allows, load it with "
            f"datasets.load_dataset and save it with save_to_disk, then ingest that directory."
        ) from None


def hub_fingerprint(source: Source) -> str:
    """The hub dataset's own content fingerprint (it has no local files to hash)."""
    ds = _pick_split(_load_hub(source), source.split, source.path)
    return getattr(ds, "_fingerprint", "") or ""


def read_hub(source: Source, direction) -> Iterator[Row]:
    ds = _pick_split(_load_hub(source), source.split, source.path)
    yield from _read_records(source.path, ds, source.schema, direction)
