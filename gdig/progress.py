"""Progress of the long stages, for whoever is watching: a terminal bar and pluggable reporters.

A stage loop wraps its iterable in `track(...)` (or drives a `Tracker` by hand).  The terminal
bar (tqdm, on stderr) shows when the caller asked for progress; independently, every reporter
installed with `reporting(...)` receives a `ProgressEvent` when the stage starts, about every
`interval` seconds while it runs, and when it ends.  A reporter is any callable taking the
event: the Prefect tasks (gdig_flows/tasks/) plug in one that writes the event's `line()` to the task
run's log and moves a progress artifact; a notebook can plug in `print`.  Nothing here
knows Prefect.

    with reporting(print, interval=5):
        for batch in track(batches, "scoring", total=len(batches), unit="batch"):
            ...

The interval defaults to GDIG_PROGRESS_INTERVAL seconds (15 when unset).
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, TypeVar

from gdig import faults

T = TypeVar("T")
DEFAULT_INTERVAL = 15.0


@dataclass(frozen=True)
class ProgressEvent:
    """Where a stage is: `done` of `total` units after `elapsed` seconds."""

    stage: str
    done: int
    total: int | None
    unit: str
    elapsed: float
    initial: int = 0  # units already done when this run started (a resumed training)
    final: bool = False
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. {"loss": "2.31"}

    @property
    def rate(self) -> float | None:
        """Units per second in this run (None before the first unit)."""
        n = self.done - self.initial
        return n / self.elapsed if n > 0 and self.elapsed > 0 else None

    @property
    def eta(self) -> float | None:
        """Seconds left at the current rate (None without a total or a rate)."""
        if self.total is None or self.rate is None:
            return None
        return max(0, self.total - self.done) / self.rate

    @property
    def fraction(self) -> float | None:
        return None if not self.total else min(1.0, self.done / self.total)

    def line(self) -> str:
        """`score-shard [0, 32): 12/40 batch (30%), 2.4 batch/s, ETA 12s, loss 2.31`"""
        count = f"{self.done}/{self.total}" if self.total is not None else str(self.done)
        parts = [f"{count} {self.unit}" + (f" ({100 * self.fraction:.0f}%)" if self.fraction is not None else "")]
        if self.rate is not None:
            parts.append(f"{self.rate:.3g} {self.unit}/s")
        if self.final:
            parts.append(f"done in {_duration(self.elapsed)}")
        elif self.eta is not None:
            parts.append(f"ETA {_duration(self.eta)}")
        parts += [f"{k} {v}" for k, v in self.extra.items()]
        return f"{self.stage}: " + ", ".join(parts)


Reporter = Callable[[ProgressEvent], Any]

_REPORTERS: ContextVar[tuple[tuple[Reporter, float], ...]] = ContextVar("gdig_progress_reporters", default=())


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def default_interval() -> float:
    try:
        return max(0.0, float(os.environ.get("GDIG_PROGRESS_INTERVAL", DEFAULT_INTERVAL)))
    except ValueError:
        return DEFAULT_INTERVAL


@contextmanager
def reporting(*reporters: Reporter, interval: float | None = None) -> Iterator[None]:
    """Send the progress of every stage run inside this block (this thread / task) to `reporters`,
    at most one event per `interval` seconds per stage besides its first and last."""
    every = default_interval() if interval is None else interval
    token = _REPORTERS.set(_REPORTERS.get() + tuple((r, every) for r in reporters))
    try:
        yield
    finally:
        _REPORTERS.reset(token)


class Tracker:
    """One stage's progress: a tqdm bar when `enabled`, events to the installed reporters always."""

    def __init__(self, desc: str, total: int | None = None, *, unit: str = "it", enabled: bool = True,
                 initial: int = 0, leave: bool = True):
        self.desc, self.total, self.unit, self.initial = desc, total, unit, initial
        self.done = initial
        self._extra: dict[str, Any] = {}
        self._reporters = _REPORTERS.get()
        self._t0 = time.monotonic()
        self._last = [self._t0] * len(self._reporters)
        self._closed = False
        self._bar = None
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=leave)
        self._emit(force=True)

    def _event(self, final: bool = False) -> ProgressEvent:
        return ProgressEvent(self.desc, self.done, self.total, self.unit, time.monotonic() - self._t0,
                             initial=self.initial, final=final, extra=dict(self._extra))

    def _emit(self, force: bool = False, final: bool = False) -> None:
        if not self._reporters:
            return
        now, event = time.monotonic(), None
        for i, (reporter, every) in enumerate(self._reporters):
            if force or now - self._last[i] >= every:
                event = event or self._event(final)
                self._last[i] = now
                try:
                    reporter(event)
                except Exception:  # a watcher's failure must never stop the stage
                    pass

    def update(self, n: int = 1) -> None:
        self.done += n
        faults.reached(f"{self.desc}@{self.done}")  # a kill point for the fault harness (off unless asked)
        if self._bar is not None:
            self._bar.update(n)
        if self.total is None or self.done < self.total:  # the last unit is reported by close()
            self._emit()

    def set_postfix(self, **values: Any) -> None:
        """Extra values shown on the bar and in the next event (e.g. loss=f"{loss:.3f}")."""
        self._extra.update({k: str(v) for k, v in values.items()})
        if self._bar is not None:
            self._bar.set_postfix(self._extra, refresh=False)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        self._emit(force=True, final=True)

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()
        elif self._bar is not None:  # a failed stage: no "done" event
            self._closed = True
            self._bar.close()


def track(iterable: Iterable[T], desc: str, total: int | None = None, *, unit: str = "it",
          enabled: bool = True, leave: bool = True) -> Iterator[T]:
    """Iterate `iterable`, reporting one unit per item (see Tracker)."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    with Tracker(desc, total, unit=unit, enabled=enabled, leave=leave) as tracker:
        for item in iterable:
            yield item
            tracker.update()


def quiet_libraries() -> None:
    """Silence the Hugging Face libraries' own bars (transformers' "Loading weights", hub
    downloads, datasets): for modules imported later through their environment variables, for
    those already imported through their switches."""
    import sys

    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
    switches = (("huggingface_hub.utils", "disable_progress_bars"), ("transformers.utils.logging", "disable_progress_bar"),
                ("datasets.utils.logging", "disable_progress_bar"))
    for module, fn in switches:
        if module in sys.modules:
            try:
                getattr(sys.modules[module], fn)()
            except Exception:  # a library without that switch: its bars stay
                pass
