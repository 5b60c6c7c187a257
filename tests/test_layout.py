"""docs/DESIGN.md's layout tree ("## Layout") against the files: the code packages' modules and
subpackages are its entries, one for one; a subpackage's entry names each of its modules; a
file the tree names exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("gdig", "gdig_flows/tasks", "gdig_flows/flows", "gdig_flows/deployments")  # their entries list their children
SKIP = {"__init__.py", "__pycache__"}


def tree() -> dict[str, str]:
    """Entry path ("gdig/", "gdig/config.py", "README.md") -> its text (name line + continuation)."""
    text = (ROOT / "docs" / "DESIGN.md").read_text(encoding="utf-8")
    block = re.search(r"## Layout\n.*?```\n(.*?)```", text, re.S).group(1)
    entries: dict[str, str] = {}
    parent, last = "", None
    for line in block.splitlines():
        m = re.match(r"( {0,2})(\S+)(?:\s{2,}|$)", line)
        if m and not line.startswith("   "):  # a name at indent 0 (top) or 2 (a child of the last top)
            indent, name = m.groups()
            last = (parent + name) if indent else name
            if not indent:
                parent = name if name.endswith("/") else ""
            entries[last] = line
        else:
            assert last is not None, f"the layout starts with a continuation line: {line!r}"
            entries[last] += "\n" + line
    return entries


def children(folder: Path) -> set[str]:
    """What a package's entry should list: its modules, data files and subpackages."""
    out = set()
    for p in folder.iterdir():
        if p.name in SKIP or p.name.startswith("."):
            continue
        if p.is_dir() and (p / "__init__.py").is_file():
            out.add(p.name + "/")
        elif p.is_file() and p.suffix in (".py", ".yaml"):
            out.add(p.name)
    return out


def test_the_layout_lists_every_module_and_package_of_the_code():
    entries = tree()
    for package in PACKAGES:
        listed = {e[len(package) + 1:] for e in entries if e.startswith(package + "/") and e != package + "/"}
        actual = children(ROOT / package)
        assert listed == actual, (f"docs/DESIGN.md layout, {package}/: missing {sorted(actual - listed)}, "
                                  f"not in the tree {sorted(listed - actual)}")


def test_a_subpackage_entry_names_each_of_its_modules():
    entries = tree()
    for entry, text in entries.items():
        folder = ROOT / entry
        if not (entry.count("/") == 2 and entry.endswith("/") and folder.is_dir()) or entry.rstrip("/") in PACKAGES:
            continue  # a package's own entry lists its children as entries of their own
        words = set(re.findall(r"[\w.]+", text))
        for p in sorted(folder.rglob("*")):
            if p.name in SKIP or "__pycache__" in p.parts or not p.is_file() or p.suffix not in (".py", ".yaml"):
                continue
            name = p.stem if p.suffix == ".py" else p.name
            assert name in words or p.name in words, f"docs/DESIGN.md layout: {entry} does not name {p.relative_to(ROOT)}"
        for sub in (d for d in folder.iterdir() if (d / "__init__.py").is_file()):
            assert sub.name in words, f"docs/DESIGN.md layout: {entry} does not name {sub.relative_to(ROOT)}/"


def test_what_the_layout_names_exists():
    entries = tree()
    for entry, text in entries.items():
        assert (ROOT / entry).exists(), f"docs/DESIGN.md layout names {entry}, which is not there"
        here = ROOT / entry if entry.endswith("/") else (ROOT / entry).parent
        for named in re.findall(r"(?<![\w./-])([\w/-]+\.(?:py|md|yaml))\b", text.split(None, 1)[1] if " " in text else ""):
            found = (ROOT / named).exists() if "/" in named else any(here.rglob(named))
            assert found, f"docs/DESIGN.md layout, {entry}: names {named}, which is not there"
    top = {e for e in entries if "/" not in e.rstrip("/")}
    assert {"gdig/", "gdig_flows/", "tests/", "docs/", "benchmarks/"} <= top
    docs = entries["docs/"]
    for p in (ROOT / "docs").glob("*.md"):
        assert p.name == "DESIGN.md" or p.name in docs, f"docs/DESIGN.md layout: docs/ does not name {p.name}"
    tests = set(re.findall(r"(\w+)/", entries["tests/"].split(None, 1)[1]))
    assert tests == {p.name for p in (ROOT / "tests").iterdir() if p.is_dir() and p.name != "__pycache__"
                     and any(p.glob("test_*.py"))}, "docs/DESIGN.md layout: tests/ names other folders than tests/ has"
