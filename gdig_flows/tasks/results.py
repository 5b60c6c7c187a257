"""Stage results in the workspace in a format that cannot run code.

Prefect pickles task results by default, and on a cache hit it unpickles whatever file sits under
the key, with the serializer that file's own record names: anyone who can write a workspace could
run code in the next run.  So the tasks store their results as JSON (`GdigJSON`: plain values
plus a few tagged types, nothing looked up by name), and their cache-key functions (`checked`)
remove a file under the key that is not such a record before Prefect reads it: a cache miss, the
stage runs again and writes its own record.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from prefect.serializers import Serializer

TAG = "__gdig__"
NAME = "gdig-json"


def encode(obj: Any) -> Any:
    """obj as JSON values; a type outside this list is a TypeError (never pickled)."""
    import numpy as np
    import pandas as pd

    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, np.bool_):
        return bool(obj)
    if obj is pd.NA or obj is pd.NaT:
        return None
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj)
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj) and TAG not in obj:
            return {k: encode(v) for k, v in obj.items()}
        return {TAG: "dict", "items": [[encode(k), encode(v)] for k, v in obj.items()]}
    if isinstance(obj, list):
        return [encode(v) for v in obj]
    if isinstance(obj, tuple):
        return {TAG: "tuple", "items": [encode(v) for v in obj]}
    if isinstance(obj, Path):
        return {TAG: "path", "value": str(obj)}
    if isinstance(obj, datetime):
        return {TAG: "datetime", "value": obj.isoformat()}
    if isinstance(obj, np.ndarray) and obj.dtype.kind in "biuf":
        return {TAG: "array", "dtype": obj.dtype.str, "shape": list(obj.shape),
                "data": base64.b64encode(np.ascontiguousarray(obj).tobytes()).decode()}
    if isinstance(obj, pd.DataFrame):
        return {TAG: "frame", "columns": [encode(c) for c in obj.columns], "dtypes": [str(d) for d in obj.dtypes],
                "index": encode(list(obj.index)), "data": [encode(obj[c].tolist()) for c in obj.columns]}
    raise TypeError(f"a stage result holds a {type(obj).__module__}.{type(obj).__qualname__}, which gdig does "
                    f"not store (JSON values, tuples, paths, datetimes, numeric arrays, data frames only)")


def decode(value: Any) -> Any:
    import numpy as np
    import pandas as pd

    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    kind = value.get(TAG)
    if kind is None:
        return {k: decode(v) for k, v in value.items()}
    if kind == "dict":
        return {decode(k): decode(v) for k, v in value["items"]}
    if kind == "tuple":
        return tuple(decode(v) for v in value["items"])
    if kind == "path":
        return Path(value["value"])
    if kind == "datetime":
        return datetime.fromisoformat(value["value"])
    if kind == "array":
        dtype = np.dtype(value["dtype"])
        if dtype.kind not in "biuf":
            raise ValueError(f"a stored array of dtype {dtype} (numeric only)")
        return np.frombuffer(base64.b64decode(value["data"]), dtype=dtype).reshape(value["shape"]).copy()
    if kind == "frame":
        columns = [decode(c) for c in value["columns"]]
        frame = pd.DataFrame({i: decode(col) for i, col in enumerate(value["data"])}, index=decode(value["index"]))
        frame.columns = columns
        return frame.astype(dict(zip(columns, value["dtypes"]))) if columns else frame
    raise ValueError(f"unknown tagged value {kind!r} in a stored stage result")


class GdigJSON(Serializer):
    """Prefect serializer of stage results: JSON, tagged types only (see encode)."""

    type: Literal["gdig-json"] = NAME

    def dumps(self, obj: Any) -> bytes:
        return json.dumps(encode(obj), sort_keys=True).encode()

    def loads(self, blob: bytes) -> Any:
        return decode(json.loads(blob))


def is_gdig_record(content: bytes) -> bool:
    """Is this a Prefect result record written with GdigJSON (and no other serializer setting)?
    Parsed as plain JSON: nothing in it is looked up or imported."""
    try:
        record = json.loads(content)
        return record["metadata"]["serializer"] == {"type": NAME}
    except (ValueError, KeyError, TypeError):
        return False


def refuse_foreign_record(storage: Any, key: str) -> None:
    """Before Prefect looks up `key` in a task's result directory: a file there that is not a
    GdigJSON record is removed, so the lookup is a miss and the stage runs again (Prefect would
    deserialize it with the serializer it names, pickle included)."""
    if not isinstance(storage, (str, Path)):
        return
    path = Path(storage) / key
    try:
        content = path.read_bytes()
    except OSError:  # no such file: a miss anyway
        return
    if not is_gdig_record(content):
        path.unlink(missing_ok=True)


def checked(key_fn):
    """A cache-key function whose key is looked up only among GdigJSON records."""

    def key_of(ctx, params: dict[str, Any]) -> str:
        key = key_fn(ctx, params)
        refuse_foreign_record(ctx.task.result_storage, key)
        return key

    return key_of
