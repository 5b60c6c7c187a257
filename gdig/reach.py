"""Which gdig modules a function can reach: the code a stage's cache key must cover.

Read from the source, nothing imported: from the function, every gdig name its body uses (a
function, class or constant of its own module, a name imported from another gdig module, an
attribute of an imported gdig module) is followed to its definition, and so on; a gdig module
used as an object (``from gdig.data import validate as V``, then ``V.split_lines``) is followed
to the attribute it names, a module imported whole and passed around is taken whole.  The result
is the set of modules whose source holds a definition the function can run, so editing any of
them changes the key of exactly the stages whose functions reach it.  What the source cannot
show (a method of an object handed in, such as the store) is the caller's to add.
"""

from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent  # the gdig package
Unit = tuple[str, "str | None"]  # (module, top-level name); None: the whole module


def module_file(module: str) -> Path | None:
    """The source file of a gdig module or package (None: not one)."""
    if module != "gdig" and not module.startswith("gdig."):
        return None
    base = ROOT.joinpath(*module.split(".")[1:])
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def source_hash(module: str) -> str:
    """Hash of the one file that holds a gdig module (a package: its __init__.py)."""
    import hashlib

    path = module_file(module)
    return hashlib.sha256(path.read_bytes()).hexdigest() if path else f"missing:{module}"


@lru_cache(maxsize=None)
def _tree(module: str) -> ast.Module:
    return ast.parse(module_file(module).read_text(encoding="utf-8"))


@lru_cache(maxsize=None)
def _top_level(module: str) -> dict[str, ast.AST]:
    """Top-level name -> the statement that binds it (def, class, assignment, import)."""
    out: dict[str, ast.AST] = {}
    for node in _tree(module).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out[node.name] = node
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                for n in ast.walk(t):
                    if isinstance(n, ast.Name):
                        out[n.id] = node
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                out[(alias.asname or alias.name).split(".")[0]] = node
    return out


def _imported(node: ast.Import | ast.ImportFrom, name: str | None = None) -> list[Unit]:
    """The units an import statement binds (only `name`'s when given)."""
    units: list[Unit] = []
    for alias in node.names:
        bound = (alias.asname or alias.name).split(".")[0]
        if name is not None and bound != name:
            continue
        if isinstance(node, ast.Import):
            if module_file(alias.name):
                units.append((alias.name, None))
        elif node.module and node.level == 0 and module_file(node.module):
            sub = f"{node.module}.{alias.name}"
            units.append((sub, None) if module_file(sub) else (node.module, alias.name))
    return units


def _walk(node: ast.AST):
    """ast.walk without annotations: a name used only as a type hint runs no code."""
    todo = [node]
    while todo:
        n = todo.pop()
        yield n
        skip = set()
        if isinstance(n, ast.arg) or isinstance(n, ast.AnnAssign):
            skip.add(id(n.annotation))
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.returns is not None:
            skip.add(id(n.returns))
        todo += [c for c in ast.iter_child_nodes(n) if id(c) not in skip]


def _uses(module: str, node: ast.AST) -> list[Unit]:
    """The units the code of `node` (in `module`) names."""
    top = _top_level(module)
    units: list[Unit] = []
    bases = set()  # module names used as `module.attribute`: the attribute is what is reached
    for n in _walk(node):
        if isinstance(n, (ast.Import, ast.ImportFrom)):
            units += _imported(n)
        elif isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name):
            bound = top.get(n.value.id)
            if isinstance(bound, (ast.Import, ast.ImportFrom)):
                found = _imported(bound, n.value.id)
                if all(name is None for _, name in found):
                    bases.add(id(n.value))
                    units += [(m, n.attr) for m, _ in found]
    for n in _walk(node):
        if isinstance(n, ast.Name) and n.id in top and top[n.id] is not node and id(n) not in bases:
            bound = top[n.id]
            units += _imported(bound, n.id) if isinstance(bound, (ast.Import, ast.ImportFrom)) else [(module, n.id)]
    return units


def _node(unit: Unit) -> ast.AST | None:
    module, name = unit
    if name is None:
        return _tree(module)
    return _top_level(module).get(name)


def modules_reached(module: str, name: str | None = None) -> tuple[str, ...]:
    """The gdig modules whose code `module.name` (or the whole module) can run, sorted; the
    packages above each are included (importing a module runs their __init__)."""
    seen: set[Unit] = set()
    todo: list[Unit] = [(module, name)]
    while todo:
        unit = todo.pop()
        if unit in seen:
            continue
        seen.add(unit)
        node = _node(unit)
        if node is None:  # a name the module does not define at top level (e.g. a package's submodule)
            sub = f"{unit[0]}.{unit[1]}"
            todo.append((sub, None) if module_file(sub) else (unit[0], None))
            continue
        todo += _uses(unit[0], node)
    modules = {m for m, _ in seen}
    for m in list(modules):
        parts = m.split(".")
        modules |= {".".join(parts[:i]) for i in range(2, len(parts))}
    return tuple(sorted(modules))
