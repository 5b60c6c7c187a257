"""What kind of failure an error is, for whoever runs the stages.

`BadInput` marks an error that running the same stage again cannot fix: invalid rows, a bad
config, a missing model or dataset, an empty data section.  The Prefect tasks fail at once on
it (no retry, no backoff) and the CLI exits 2 with its message; anything else (a store lock
held by another run, an I/O error, a crash) is a stage failure that a retry may fix (exit 1).
"""

from __future__ import annotations


class BadInput(Exception):
    """Mixin base of every gdig error that a retry cannot fix (exit code 2)."""


class StoreError(RuntimeError):
    """The workspace store cannot be used as asked (gdig.store raises it; here, below the data
    layer, so that ingest can catch it without importing the store)."""


class StoreDamaged(StoreError, BadInput):
    """The store file is truncated, corrupt or not a gdig store: running again cannot fix it
    (exit 2); the message names the file and what to do."""


def bad_input_cause(err: BaseException | None) -> BaseException | None:
    """The BadInput in err's cause/context chain (err itself first), or None."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, BadInput):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None
