"""One gdig run per workspace at a time.

`gdig select` / `gdig run` (either executor) and `gdig ingest` hold an exclusive lock on the
workspace for their whole run: a second run started on the same workspace meanwhile fails at once with one line
that names the workspace and the run holding it (exit 1: not bad input; it can run later),
instead of interleaving its stages with the first run's (two pool finetunes writing one
checkpoint directory, a store opened by turns).  The lock is an flock on a file beside the
store, so the kernel drops it with the process: a run killed with kill -9 leaves no stale lock.
Within one process it is re-entrant (the run flow calls the select flow).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

_held: dict[str, list] = {}  # lock path -> [open file, depth] held by this process
_guard = threading.Lock()


class WorkspaceBusy(RuntimeError):
    """Another gdig run holds the workspace."""


def lock_path(db: str | Path) -> Path:
    return Path(f"{db}.run-lock")


def _db(target) -> str | Path:
    """The store path of a config (its workspace.db) or the path itself."""
    workspace = getattr(target, "workspace", None)
    return workspace.db if workspace is not None else target


@contextmanager
def exclusive(target) -> Iterator[None]:
    """Hold the workspace of `target` (a config, or the store's path: `gdig ingest --db`) for the
    block, or raise WorkspaceBusy at once."""
    path = lock_path(_db(target))
    key = str(path.resolve())
    with _guard:
        if key in _held:
            _held[key][1] += 1
        else:
            _held[key] = [_acquire(path), 1]
    try:
        yield
    finally:
        with _guard:
            _held[key][1] -= 1
            if _held[key][1] == 0:
                fh = _held.pop(key)[0]
                fcntl.flock(fh, fcntl.LOCK_UN)
                fh.close()


def holder(db: str | Path) -> str | None:
    """Who holds the workspace of store `db` ("pid N on HOST, since T"), or None when no other
    process does (read without taking the lock)."""
    path = lock_path(db)
    if not path.exists() or str(path.resolve()) in _held:
        return None
    with open(path, encoding="utf-8") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _who(fh.read().strip())
        fcntl.flock(fh, fcntl.LOCK_UN)
    return None


def _who(text: str) -> str:
    try:
        who = json.loads(text)
        return f"pid {who['pid']} on {who['host']}, since {who['since']}"
    except (ValueError, KeyError, TypeError):
        return "another process"


def _acquire(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+", encoding="utf-8")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        by = _who(fh.read().strip())
        fh.close()
        raise WorkspaceBusy(f"{path.with_suffix('')}: the workspace is in use by another gdig run ({by}); "
                            f"run again when it has finished, or use another workspace") from None
    fh.seek(0)
    fh.truncate()
    fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                         "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}))
    fh.flush()
    return fh
