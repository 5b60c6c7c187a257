"""What names a run: the workspace label, the budgets, a per-run id; used by the report and
by the orchestration's run names and artifact keys (no Prefect here)."""

from __future__ import annotations

import re
import time
from pathlib import Path

from gdig.config import GdigConfig


def workspace_label(cfg: GdigConfig) -> str:
    """workspace.name, else the name of the directory holding the workspace DB."""
    if cfg.workspace.name:
        return cfg.workspace.name
    return Path(cfg.workspace.db).resolve().parent.name or "workspace"


def slug(text: str, limit: int = 60) -> str:
    """Lowercase letters, digits and single dashes (what Prefect accepts as an artifact key)."""
    out = re.sub(r"-+", "-", re.sub(r"[^a-z0-9]", "-", str(text).lower())).strip("-")
    return out[:limit].rstrip("-") or "x"


def budgets_label(cfg: GdigConfig) -> str:
    return ",".join(str(b) for b in cfg.selection.budgets)


def run_stamp(now: float | None = None) -> str:
    """A sortable, path-safe id of a run: 20261201-214530 (UTC)."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
