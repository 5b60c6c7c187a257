"""What two runs' files are compared by: their bytes, a safetensors header made canonical."""

from __future__ import annotations

import json
import struct
from pathlib import Path


def content(path: Path) -> bytes:
    """A file's bytes; a safetensors file's header canonical (safetensors writes its metadata in
    hash-map order, which differs between two writes of the same tensors and metadata)."""
    raw = Path(path).read_bytes()
    if Path(path).suffix != ".safetensors":
        return raw
    n = struct.unpack("<Q", raw[:8])[0]
    return json.dumps(json.loads(raw[8:8 + n]), sort_keys=True).encode() + raw[8 + n:]
