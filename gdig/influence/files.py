"""Writing influence artifacts: safetensors files written atomically and sealed
(gdig.workspace.atomic_file), so a crash mid-write never leaves a truncated factor or product
file that a re-run would trust (gdig.workspace.intact)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from gdig.workspace import atomic_file


def save_tensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str]) -> None:
    with atomic_file(path, "tensor") as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
