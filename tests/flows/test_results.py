"""Stage results as JSON (gdig_flows.tasks.results): what stages return comes back equal, anything else is
refused when written, and a record that is not gdig's is removed before Prefect could read it."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gdig_flows.tasks.results import GdigJSON, is_gdig_record, refuse_foreign_record


def test_stage_values_round_trip():
    frame = pd.DataFrame({"example_id": ["a", "b"], "loss": np.array([0.5, 1.25], dtype=np.float32),
                          "n": np.array([3, 4], dtype=np.int64), "label": ["noise", None],
                          "flag": np.array([True, False]), "count": pd.array([1, None], dtype="Int64")},
                         index=[7, 9])
    value = {"path": Path("/x/y"), "pair": (1, "two"), "ids": [1, 2.5, None, True], 3: "int key",
             "at": datetime(2026, 1, 2, 3, 4, 5), "array": np.arange(6, dtype=np.float32).reshape(2, 3),
             "frame": frame, "np": np.int64(5), "__gdig__": "a key that is the tag"}
    back = GdigJSON().loads(GdigJSON().dumps(value))
    assert back.keys() == value.keys() and back["path"] == Path("/x/y") and back["pair"] == (1, "two")
    assert back[3] == "int key" and back["at"] == value["at"] and back["np"] == 5 and back["ids"] == [1, 2.5, None, True]
    assert back["array"].dtype == np.float32 and np.array_equal(back["array"], value["array"])
    pd.testing.assert_frame_equal(back["frame"], frame)


def test_a_value_json_cannot_hold_is_refused():
    class Custom:
        pass

    with pytest.raises(TypeError, match=r"a stage result holds a .*Custom, which gdig does not store"):
        GdigJSON().dumps({"x": Custom()})
    with pytest.raises(TypeError, match="numpy.ndarray"):
        GdigJSON().dumps(np.array(["a"], dtype=object))


def test_only_gdig_records_stay_under_a_key(tmp_path):
    from prefect._internal.result_records import ResultRecord, ResultRecordMetadata
    from prefect.serializers import JSONSerializer, PickleSerializer

    def record(serializer):
        return ResultRecord(metadata=ResultRecordMetadata(storage_key="k", serializer=serializer),
                            result={"a": 1}).serialize()

    ours, pickled, json_ = record(GdigJSON()), record(PickleSerializer()), record(JSONSerializer())
    assert is_gdig_record(ours) and not is_gdig_record(pickled) and not is_gdig_record(json_)
    assert json.loads(ours)["metadata"]["serializer"] == {"type": "gdig-json"}
    for name, content in {"ours": ours, "pickled": pickled, "json": json_, "junk": b"\x80\x04junk"}.items():
        (tmp_path / name).write_bytes(content)
        refuse_foreign_record(tmp_path, name)
    refuse_foreign_record(tmp_path, "missing")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ours"]
