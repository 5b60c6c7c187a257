"""Every set of names a config key takes is spelled once (docs/DESIGN.md, "Vocabularies"): the
config builds each `Literal` from a table, and no module spells a vocabulary again."""

from __future__ import annotations

import ast
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from gdig.config import CurvatureConfig, GdigConfig

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("gdig", "gdig_flows")
SENTINELS = {"auto", True, False}  # `float | Literal["auto"]`, `Literal["auto", True, False]`: no vocabulary
# still spelled twice: its names are the keys of gdig.influence.modules.PRESETS (a torch module) and the
# config's Literal; they move below the config with the module presets' next change
PENDING: dict[str, frozenset] = {}


def vocabularies(model: type[BaseModel] = GdigConfig, prefix: str = "") -> dict[str, frozenset]:
    """Config key -> the names its Literal takes (two or more besides "auto")."""
    out = {}

    def walk(key, t):
        if typing.get_origin(t) is typing.Literal:
            names = frozenset(a for a in typing.get_args(t) if isinstance(a, str))
            if len(names - {"auto"}) >= 2:
                out[key] = names
        elif isinstance(t, type) and issubclass(t, BaseModel):
            out.update(vocabularies(t, key + "."))
        else:
            for arg in typing.get_args(t):
                walk(key, arg)

    for name, field in model.model_fields.items():
        walk(prefix + name, field.annotation)
    return out


def spelled(tree: ast.AST):
    """(line, names) of every literal collection of strings (tuple, list, set, dict keys, Literal)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "Literal":
            elts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        elif isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            elts = node.elts
        elif isinstance(node, ast.Dict):
            elts = node.keys
        else:
            continue
        if elts and all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in elts):
            yield node.lineno, {e.value for e in elts}


def test_every_literal_of_the_config_is_built_from_a_table():
    copies = []
    for node in ast.walk(ast.parse((ROOT / "gdig" / "config.py").read_text(encoding="utf-8"))):
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "Literal":
            elts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            consts = {e.value for e in elts if isinstance(e, ast.Constant)}
            if consts and not consts <= SENTINELS and frozenset(consts) not in PENDING.values():
                copies.append(f"gdig/config.py:{node.lineno}: Literal{sorted(consts, key=str)}")
    assert not copies, "a Literal spelling its names instead of taking them from a table:\n" + "\n".join(copies)


def test_no_vocabulary_is_spelled_twice():
    vocab = vocabularies()
    assert vocab["influence.curvature.strategy"] == {"kfac", "ekfac"}  # the walk sees the derived ones
    sites: dict[str, list[str]] = {key: [] for key in vocab}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found = set()
            for line, names in spelled(ast.parse(path.read_text(encoding="utf-8"))):
                for key, choices in vocab.items():
                    core = choices - {"auto", "none"}
                    # a copy: only names of the vocabulary, all of a small one or three of a larger one
                    if names <= choices | {"none"} and len(names & core) >= min(3, len(core)):
                        found.add((key, f"{path.relative_to(ROOT)}:{line}"))
            for key, site in found:
                sites[key].append(site)
    twice = {k: s for k, s in sites.items() if len(s) > (2 if k in PENDING else 1)}
    assert not twice, f"vocabularies spelled in more than one place: {twice}"


def test_the_curvature_choices_are_the_strategies_tables():
    from gdig.influence.inverse import default_damping
    from gdig.influence.strategies import DAMPING_RULES, EKFAC, KFAC, STRATEGIES, one_of

    fields = CurvatureConfig.model_fields
    assert typing.get_args(fields["strategy"].annotation) == tuple(STRATEGIES) == ("kfac", "ekfac")
    assert typing.get_args(fields["kfac_damping"].annotation) == KFAC.damping_rules == ("pi", "mean_eigenvalue")
    assert typing.get_args(fields["ekfac_damping"].annotation) == EKFAC.damping_rules == ("absolute", "mean_eigenvalue")
    assert (fields["kfac_damping"].default, fields["ekfac_damping"].default) == ("pi", "absolute")
    assert set(KFAC.damping_rules) | set(EKFAC.damping_rules) == set(DAMPING_RULES)
    assert [default_damping(s, k, e) for s, k, e in (("kfac", "pi", "absolute"), ("kfac", "mean_eigenvalue", "absolute"),
                                                    ("ekfac", "pi", "absolute"), ("ekfac", "pi", "mean_eigenvalue"))] == [
        0.5, 0.1, 0.5, 0.1]
    with pytest.raises(ValueError, match=r"^influence.curvature.kfac_damping must be one of pi, mean_eigenvalue, "
                                         r"got 'absolute'$"):
        default_damping("kfac", "absolute")
    assert one_of("k", "pi", KFAC.damping_rules) == "pi"
