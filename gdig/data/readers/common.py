"""What every reader shares: the Row it yields, the resolved Source, ReadError, and the
whole-file checks (unreadable, empty, binary where text is expected)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gdig.data import validate as V
from gdig.errors import BadInput


class ReadError(BadInput, ValueError):
    """A source that cannot be read at all (missing file, no direction, unreachable hub...)."""


@dataclass
class Row:
    file: str
    row: int  # 1-based; 0 = a problem with the whole file
    src: str | None
    tgt: str | None
    src_lang: str | None
    tgt_lang: str | None
    label: str | None
    raw: str
    reason: str | None = None  # why the row cannot be used, found while reading


@dataclass
class Source:
    """A resolved input: what to read and how, plus the bytes that identify its content."""

    path: str  # as the caller gave it
    fmt: str  # resolved: jsonl, json, tsv, moses, disk, hub
    schema: str | None = None  # forced object schema: "gdig" or "hf" (None: detect)
    files: list[Path] = field(default_factory=list)
    split: str | None = None
    limit: int | None = None
    hub_name: str | None = None
    hub_config: str | None = None

    @property
    def label(self) -> str:
        if self.fmt == "moses" and len(self.files) == 2:
            return f"{self.files[0]} + {self.files[1]}"
        return self.path

    @property
    def stem(self) -> str:
        """A default dataset name for this source."""
        if self.fmt == "hub":
            return (self.hub_name or self.path).rstrip("/").split("/")[-1]
        if self.fmt == "moses":
            return self.files[0].stem  # x.de -> x
        p = Path(self.path)
        return p.name if self.fmt == "disk" else p.stem


def file_bytes(p: Path) -> bytes:
    try:
        return p.read_bytes()
    except OSError as err:
        raise ReadError(f"{p}: cannot read: {err}") from None


def file_problem(source: Source, p: Path, data: bytes) -> Row | None:
    """Whole-file problems: empty, or binary where text is expected."""
    if not data.strip():
        return Row(str(p), 0, None, None, None, None, None, "", V.EMPTY_FILE)
    if V.looks_binary(data[:8192]):
        raw = data[:200].decode("utf-8", errors="backslashreplace")
        return Row(str(p), 0, None, None, None, None, None, raw,
                   V.not_format("text", p.suffix or source.fmt))
    return None


def checked_bytes(source: Source, p: Path) -> tuple[bytes, Row | None]:
    """A text file's bytes and its whole-file problem (None when it has none)."""
    data = file_bytes(p)
    return data, file_problem(source, p, data)
