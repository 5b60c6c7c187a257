"""The README is a front door: short, its two commands are what CI runs, its config parses, and
neither it nor any benchmark's defaults name a path outside the repository."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

from gdig.config import parse_config

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_readme_is_short():
    assert len(README.splitlines()) <= 200


def test_the_two_commands_are_what_ci_runs():
    install, tests = _blocks("bash")[0].strip().splitlines()
    raw = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    ci = raw.replace("pip install -q ", "pip install ")
    for step in ("python3 -m venv .venv", ".venv/bin/pip install torch==2.13.0", '.venv/bin/pip install -e ".[test]"'):
        assert step in install and step in ci, step
    assert install.endswith("&& .venv/bin/gdig demo")
    assert tests == ".venv/bin/python -m pytest -q" and ".venv/bin/python -m pytest -q " in raw


def test_the_minimal_config_parses():
    block = next(b for b in _blocks("yaml") if b.startswith("languages:"))
    cfg = parse_config(yaml.safe_load(block), base_dir=ROOT)
    assert cfg.selection.strategies == ["gdig", "random", "quality"] and cfg.finetune.method == "lora"


def test_no_path_outside_the_repository():
    for text, where in [(README, "README.md"), ((ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8"),
                                                "benchmarks/README.md")]:
        assert not re.search(r"(/work/|\.\./shared|/home/|/tmp/)", text), where
    for path in sorted((ROOT / "benchmarks").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
                for kw in node.keywords:
                    if kw.arg == "default":
                        value = ast.unparse(kw.value)
                        assert not re.search(r"['\"](/|\.\./|~)", value), f"{path.name}: default {value}"
