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
    from gdig.config import ConfigError

    defaults = demo_defaults()
    unknown = set(overrides or {}) - set(defaults)
    if unknown:
        hint = " (the corpus seed is --seed)" if "seed" in unknown else ""
        raise ConfigError(f"unknown demo setting(s) {sorted(unknown)}{hint}; known: {', '.join(defaults)}")
    return {**defaults, **(overrides or {})}


def split_demo_overrides(overrides: list[str]) -> tuple[dict[str, Any], list[str]]:
    """`gdig demo --set` items: the `demo.*` ones as settings for `prepare_demo` (they size the
    corpus and the model, so they must reach it before anything is generated), and the rest for
    the generated config.  A `demo.*` key that is not a demo setting, and a config key the demo
    config does not accept, are errors here, before anything is generated."""
    from gdig.config import ConfigError, apply_overrides, parse_config

    demo, rest = {}, []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not key.strip().startswith("demo."):
            rest.append(item)
            continue
        name = key.strip()[len("demo."):]
        if not sep or not name or "." in name:
            raise ConfigError(f"override {item!r}: expected demo.SETTING=VALUE, e.g. demo.n_pool=10000")
        demo[name] = yaml.safe_load(raw)
    demo_settings(demo)
    parse_config(apply_overrides(demo_config_template(), rest), source="demo config")
    return demo, rest
