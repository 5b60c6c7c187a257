"""Writing influence artifacts: safetensors files replaced atomically, so a crash mid-write
never leaves a truncated factor or product file that a re-run would trust."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file


def save_tensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(f"{path}.tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)
