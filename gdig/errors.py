"""What kind of failure an error is, for whoever runs the stages.

`BadInput` marks an error that running the same stage again cannot fix: invalid rows, a bad
config, a missing model or dataset, an empty data section.  The Prefect tasks fail at once on
it (no retry, no backoff) and the CLI exits 2 with its message.  A full disk is one too
(`disk_full` recognises it under any library's wrapper).  Anything else (a store lock held by
another run, an I/O error, a crash) is a stage failure that a retry may fix (exit 1).
"""

from __future__ import annotations

import errno
from typing import Iterator


class BadInput(Exception):
    """Mixin base of every gdig error that a retry cannot fix (exit code 2)."""


class StoreError(RuntimeError):
    """The workspace store cannot be used as asked (gdig.store raises it; here, below the data
    layer, so that ingest can catch it without importing the store)."""


class StoreDamaged(StoreError, BadInput):
    """The store file is truncated, corrupt or not a gdig store: running again cannot fix it
    (exit 2); the message names the file and what to do."""


def _chain(err: BaseException | None) -> Iterator[BaseException]:
    """err, then its cause (or context), and so on; each once."""
    seen = set()
    while err is not None and id(err) not in seen:
        yield err
        seen.add(id(err))
        err = err.__cause__ or err.__context__


def bad_input_cause(err: BaseException | None) -> BaseException | None:
    """The BadInput in err's cause/context chain (err itself first), or None."""
    return next((e for e in _chain(err) if isinstance(e, BadInput)), None)


class DiskFull(BadInput, OSError):
    """A write found no space left on the device.  Retrying cannot help until space is freed;
    what was finished is kept (every artifact is written whole or not at all), so the same
    command run again resumes (exit 2)."""


_NO_SPACE = ("no space left on device", "os error 28", "disk quota exceeded")


def disk_full(err: BaseException | None, writing: object = None) -> DiskFull | None:
    """A DiskFull for err when anything in its cause/context chain is a full disk (an OSError
    with ENOSPC/EDQUOT, or a library's error that says so: safetensors, DuckDB, pyarrow wrap
    it in their own types), naming the file being written (`writing`, else the error's own),
    else None."""
    for e in _chain(err):
        if isinstance(e, DiskFull):
            return e
        text = str(e)
        if getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or any(m in text.lower() for m in _NO_SPACE):
            where = writing or getattr(e, "filename", None)
            detail = f" writing {where}" if where else f" ({text.strip().splitlines()[0][:200]})" if text.strip() else ""
            return DiskFull(f"no space left on the device{detail}: free space there (or point workspace.dir "
                            f"at a larger disk) and run the same command again; finished stages are kept")
    return None
