"""Imports only go down: every import in the code (lazy ones inside functions included) against
the layer order written in docs/DESIGN.md ("## Layers")."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("gdig", "gdig_flows")


def layers() -> dict[str, int]:
    """Module prefix -> layer (0 = bottom), from the fenced list under "## Layers" (top first)."""
    text = (ROOT / "docs" / "DESIGN.md").read_text(encoding="utf-8")
    block = re.search(r"## Layers\n.*?```\n(.*?)```", text, re.S).group(1)
    rows = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    out = {}
    for level, row in enumerate(reversed(rows)):
        for name in (n.strip() for n in row.split(",")):
            out[name] = level
    return out


def layer_of(module: str, table: dict[str, int]) -> tuple[str, int]:
    """The longest prefix of `module` in the table, and its layer."""
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        name = ".".join(parts[:i])
        if name in table and (name not in PACKAGES or name == module or name != "gdig"):
            return name, table[name]  # "gdig" alone is the package's own __init__, not its modules
    raise AssertionError(f"{module} is in no layer of docs/DESIGN.md")


def _is_module(name: str) -> bool:
    base = ROOT.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of this project's packages in a file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] if node.module not in PACKAGES else [
                f"{node.module}.{a.name}" if _is_module(f"{node.module}.{a.name}") else node.module for a in node.names]
            out += [(node.lineno, n) for n in names if n.split(".")[0] in PACKAGES]
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] in PACKAGES]
    return out


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def test_every_import_goes_down_the_layers():
    table = layers()
    upward = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            here, level = layer_of(module_name(path), table)
            for line, target in imports(path):
                there, target_level = layer_of(target, table)
                if target_level > level or (target_level == level and there != here
                                            and not there.startswith(here + ".") and not here.startswith(there + ".")):
                    upward.append(f"{path.relative_to(ROOT)}:{line} ({here}) imports {target} ({there})")
    assert not upward, "imports against the layer order of docs/DESIGN.md:\n" + "\n".join(upward)


def test_the_layer_table_names_every_module():
    table = layers()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            layer_of(module_name(path), table)  # raises for a module in no layer
