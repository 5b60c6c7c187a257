"""Named kill points, for the fault-injection harness (tests/flows/fault_harness.py).

A run passes named points as it works: every stage at its start (`<stage>`) and after its
function returned (`<stage>/done`, before the executor records the result), and every progress
loop after each unit (`<loop>@<units done>`, e.g. `finetune-pool@3`, `scoring@1`; the names are
those of gdig.progress.Tracker); inside writes: `<kind> write` (gdig.workspace.atomic_file: the
temporary written, not renamed; kinds tensor, parquet, resume, done marker), `<kind> seal`
(renamed, not sealed), `checkpoint write` (a finetune's weights saved, its done marker not) and
`store commit` (a DuckDB transaction's writes made, not committed).  With
GDIG_KILL_AT=<point>[#<n>] set, the process kills itself with SIGKILL the n-th time (default: the first) it passes that point: a kill -9 at a chosen,
repeatable place, not at a moment.  With GDIG_TRACE_POINTS=<file> set, every point passed is
appended to that file (what a rerun did again).  Unset, a point costs one environment lookup.
"""

from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from typing import Iterator

KILL_ENV = "GDIG_KILL_AT"
TRACE_ENV = "GDIG_TRACE_POINTS"

_lock = threading.Lock()
_passed: dict[str, int] = {}


def reached(point: str) -> None:
    """Pass `point`: trace it, and die here when GDIG_KILL_AT names it (and this passage)."""
    target, trace = os.environ.get(KILL_ENV), os.environ.get(TRACE_ENV)
    if not target and not trace:
        return
    with _lock:
        count = _passed[point] = _passed.get(point, 0) + 1
        if trace:
            with open(trace, "a", encoding="utf-8") as fh:
                fh.write(point + "\n")
    if target:
        name, _, nth = target.partition("#")
        if name == point and count == int(nth or 1):
            os.kill(os.getpid(), signal.SIGKILL)


@contextmanager
def stage(name: str) -> Iterator[None]:
    """The points of one stage call: `<name>` before it, `<name>/done` after it returned."""
    reached(name)
    yield
    reached(f"{name}/done")
