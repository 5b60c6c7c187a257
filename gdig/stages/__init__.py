"""The stage functions the graph (gdig.graph) declares: fn(ctx, **inputs) -> a small result.

Each takes a StageContext (config, store, progress, device, the run, its settings key) and the upstream results it declares,
and returns a small dict (ids, paths, counts) that the next stages take.  Both executors call
them: gdig.pipeline (in this process) and the Prefect tasks (gdig_flows/tasks/), one task per stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gdig.workspace import Workspace


@dataclass
class StageContext:
    cfg: Any
    store: Any = None  # None for the stages that never open the store (mapped shards)
    progress: bool = True
    device: str | None = None  # where a mapped shard runs (orchestration.devices); None: model.device
    run: tuple[str, dict] | None = None  # the report's (run directory name, header); None: plain defaults
    settings_key: str | None = None  # its config sections + code (gdig.graph.settings_key): keys what it stores
    code_keys: dict[str, str] | None = None  # artifact kind -> code key (gdig.graph.code_keys): names its files

    @property
    def workspace(self) -> Workspace:
        return Workspace(self.cfg)

    def code_key(self, kind: str) -> str:
        """The code key of an artifact kind ("curvature", "seed-products", "scores", "finetune");
        empty when the caller gave none (a stage called by hand)."""
        return (self.code_keys or {}).get(kind, "")
