"""The demo's config and sizes, from ONE file: gdig/demo/config.yaml.

Its `demo:` section sizes the corpus (pool, seed, eval, general rows, noise rate) and the
tiny model; `write_demo_data`, `prepare_demo` and `gdig demo` all take their defaults from
it, so the sizes benchmarks/README.md's demo section reports are the ones every entry point uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

# shipped inside the package (package data), so an install without the repository has it too
CONFIG_PATH = Path(__file__).with_name("config.yaml")


def demo_config_template() -> dict[str, Any]:
    """The demo config as a fresh dict (relative paths resolve in the demo workdir)."""
    return yaml.safe_load(CONFIG_PATH.read_text(encoding="utf-8"))


def demo_defaults() -> dict[str, Any]:
    """The `demo:` section: corpus sizes, noise rate, tiny-model sizes, pretraining."""
    return demo_config_template()["demo"]


def demo_settings(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The defaults with `overrides` applied; an unknown key is an error that lists the known ones."""
    defaults = demo_defaults()
    unknown = set(overrides or {}) - set(defaults)
    if unknown:
        raise ValueError(f"unknown demo setting(s) {sorted(unknown)}; known: {', '.join(defaults)}")
    return {**defaults, **(overrides or {})}
