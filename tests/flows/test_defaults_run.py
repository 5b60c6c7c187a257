"""The product as a user meets it: the README's minimal config, every other key at its default,
runs `gdig run` to the end under Prefect and without it, and the report draws the γ each budget
used (`gamma: auto` is a setting, not a threshold)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from tiny_workspace import demo_model_dir  # noqa: F401  (fixture: a tiny llama that knows the demo pair)

ROOT = Path(__file__).resolve().parents[2]


def readme_minimal_config() -> dict:
    """The YAML block under the README's "A minimal config" heading, as a user copies it."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## A minimal config", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block, "README: no yaml block under 'A minimal config'"
    return yaml.safe_load(block.group(1))


def documented_defaults() -> dict[str, str]:
    """key -> the default docs/config.md shows (backticks stripped); sections and required keys left out."""
    out = {}
    for line in (ROOT / "docs" / "config.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]  # `\|` is inside a cell
        if len(cells) >= 4 and cells[0].startswith("`") and cells[2].startswith("`"):
            out[cells[0].strip("`")] = cells[2].strip("`")
    return out


def _leaves(obj, prefix=""):
    from pydantic import BaseModel

    for name in type(obj).model_fields:
        value = getattr(obj, name)
        key = f"{prefix}{name}"
        if isinstance(value, BaseModel):
            yield from _leaves(value, key + ".")
        else:
            yield key, value


def _set_keys(data: dict, prefix="") -> set[str]:
    out = set()
    for k, v in data.items():
        out.add(prefix + k)
        if isinstance(v, dict):
            out |= _set_keys(v, prefix + k + ".")
    return out


def test_minimal_config_parses_to_the_documented_defaults(tmp_path):
    from gdig.config import parse_config
    from gdig.configdoc import _value

    data = readme_minimal_config()
    assert set(data) == {"languages", "model", "data", "selection", "finetune"}
    cfg = parse_config(data, base_dir=tmp_path)
    given = _set_keys(data)
    docs = documented_defaults()
    checked = 0
    for key, value in _leaves(cfg):
        if key in given or key not in docs or key.startswith(("data.", "workspace.")):
            continue  # paths resolve against the config's directory
        assert _value(value) == docs[key], f"{key}: parsed {_value(value)!r}, docs/config.md says {docs[key]!r}"
        checked += 1
    assert checked > 60  # every section's keys, not a handful
    # the selection a user gets is gdig's tuned one, not the paper's
    assert (cfg.selection.gamma, cfg.selection.quality, cfg.selection.allocation) == ("auto", "loss", "drop_low")


def user_config(root: Path, model_dir: Path) -> Path:
    """The README's minimal config with its values fitted to the tiny model and a small pool:
    the same keys, nothing added but the CPU device and budgets the pool can hold."""
    from gdig.demo import write_demo_data

    files = write_demo_data(root / "data", n_pool=120, n_seed=6, n_eval=4, n_general=4, noise_rate=0.3, seed=1)
    data = readme_minimal_config()
    data["languages"] = {"src": "xa", "tgt": "xb"}
    data["model"] = {**data["model"], "name_or_path": str(model_dir), "device": "cpu"}
    data["data"] = {"candidates": [{"path": str(files["pool"])}], "seed": [{"path": str(files["seed"])}],
                    "eval": [{"path": str(files["eval"]), "name": "wmt22"}]}
    data["selection"] = {**data["selection"], "budgets": [12, 24]}
    path = root / "gdig.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.mark.prefect
@pytest.mark.parametrize("executor", ["--no-prefect", "--prefect"])
def test_gdig_run_at_the_defaults_completes(executor, tmp_path, demo_model_dir, request, monkeypatch):
    from typer.testing import CliRunner

    from gdig.cli import app

    if executor == "--prefect":
        request.getfixturevalue("prefect_harness")
    config = user_config(tmp_path, demo_model_dir)
    monkeypatch.chdir(tmp_path)  # workspace.db / dir at their defaults: relative to the config
    res = CliRunner().invoke(app, ["run", str(config), executor, "--no-progress"])
    assert res.exit_code == 0, res.output
    report = (tmp_path / "artifacts" / "reports" / "latest" / "report.md").read_text(encoding="utf-8")
    used = re.findall(r"γ = ([0-9.]+) at budget (\d+): \d+ of \d+ candidates are high-quality", report)
    assert sorted(int(b) for _, b in used) == [12, 24], report
    assert all(0.0 <= float(g) <= 1.0 for g, _ in used)
    assert "gamma auto" not in report and "γ = auto" not in report



