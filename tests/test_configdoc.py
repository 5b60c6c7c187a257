"""docs/config.md is rendered from the config models: every key has its help in gdig/config.py
(Field(description=...)), and the file is what the code renders now."""

from __future__ import annotations

import typing
from pathlib import Path

from pydantic import BaseModel

from gdig import configdoc
from gdig.config import GdigConfig

ROOT = Path(__file__).resolve().parents[1]


def _fields(model: type[BaseModel], prefix: str = ""):
    for name, field in model.model_fields.items():
        key, ann = f"{prefix}{name}", field.annotation
        yield key, field
        item = typing.get_args(ann)[0] if typing.get_origin(ann) is list else None
        for sub in (ann, item):
            if isinstance(sub, type) and issubclass(sub, BaseModel):
                yield from _fields(sub, key + ".")


def test_every_key_has_its_help_in_the_model():
    missing = [key for key, field in _fields(GdigConfig) if not (field.description or "").strip()]
    assert len(list(_fields(GdigConfig))) > 100
    assert not missing, f"config keys without Field(description=...): {missing}"


def test_docs_config_md_is_what_the_models_render():
    on_disk = (ROOT / "docs" / "config.md").read_text(encoding="utf-8")
    assert on_disk == configdoc.render(), (
        "docs/config.md is out of date: regenerate it with `python -m gdig.configdoc > docs/config.md`")


def test_rows_show_type_choices_default_and_limits():
    doc = configdoc.render()
    row = next(ln for ln in doc.splitlines() if ln.startswith("| `influence.curvature.strategy` |"))
    assert row.startswith("| `influence.curvature.strategy` | `kfac` \\| `ekfac` | `ekfac` | ")
    assert "| `languages.src` | str | required |" in doc
    assert "| `selection.closing_loss_max` | float or null (> 0.0) | `8.0` |" in doc
    assert "| `data.seed` | list of mapping (keys as `data.candidates[]`) | `[]` |" in doc
    # pool_finetune extends finetune: only its own keys are listed, and it says so
    assert "`pool_finetune.lr`" not in doc and "| `pool_finetune.enabled` | bool | `false` |" in doc
    assert "Every key of `finetune` (same defaults), plus:" in doc
