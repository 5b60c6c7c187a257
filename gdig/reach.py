"""Which gdig modules a function can reach: the code a stage's cache key must cover.

Read from the source, nothing imported: from the function, every gdig name its body uses (a
function, class or constant of its own module, a name imported from another gdig module, an
attribute of an imported gdig module) is followed to its definition, and so on; a gdig module
used as an object (``from gdig.data import validate as V``, then ``V.split_lines``) is followed
to the attribute it names, a module imported whole and passed around is taken whole.  The result
is the set of modules whose source holds a definition the function can run, so editing any of
them changes the key of exactly the stages whose functions reach it.  Relative imports are
resolved against the importing module's package, and ``importlib.import_module("gdig....")``
with a literal name is followed like an import; a module imported by a name computed at run
time (`import_module(name)`, `__import__`) cannot be followed, so walking code that does it is
an error (`Unfollowable`) rather than a key that misses code.  What the source cannot show (a
method of an object handed in, such as the store) is the caller's to add.  The versions of the
libraries that do the numeric work (`library_versions`) go into the same keys.
"""

from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent  # the gdig package
Unit = tuple[str, "str | None"]  # (module, top-level name); None: the whole module


class Unfollowable(RuntimeError):
    """Code that imports a module by a name computed at run time: no key can cover it."""


# what the numbers depend on beyond gdig's own code: an upgrade of one renews what it computed
LIBRARIES = ("torch", "transformers", "peft", "safetensors", "numpy")


def library_versions() -> dict[str, str]:
    """The installed version of each of LIBRARIES (read from the package metadata, not imported)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "absent"
    return out


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


def _absolute(module: str, node: ast.ImportFrom) -> str | None:
    """The module an ImportFrom names, relative ones resolved against `module`'s package."""
    if node.level == 0:
        return node.module
    package = module.split(".")
    if module_file(module) is not None and module_file(module).name != "__init__.py":
        package = package[:-1]  # a plain module: its package is the one above it
    if node.level - 1 > len(package) - 1:
        return None
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imported(module: str, node: ast.Import | ast.ImportFrom, name: str | None = None) -> list[Unit]:
    """The units an import statement in `module` binds (only `name`'s when given)."""
    units: list[Unit] = []
    source = None if isinstance(node, ast.Import) else _absolute(module, node)
    for alias in node.names:
        bound = (alias.asname or alias.name).split(".")[0]
        if name is not None and bound != name:
            continue
        if isinstance(node, ast.Import):
            if module_file(alias.name):
                units.append((alias.name, None))
        elif source and module_file(source):
            sub = f"{source}.{alias.name}"
            units.append((sub, None) if module_file(sub) else (source, alias.name))
    return units


def _dynamic(module: str, node: ast.Call) -> list[Unit]:
    """`import_module("gdig.x")` as the import it is; a computed name: Unfollowable."""
    func = node.func
    called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if called not in ("import_module", "__import__"):
        return []
    arg = node.args[0] if node.args else None
    if called == "import_module" and isinstance(arg, ast.Constant) and isinstance(arg.value, str) \
            and not arg.value.startswith("."):
        return [(arg.value, None)] if module_file(arg.value) else []
    raise Unfollowable(f"{module_file(module)}:{node.lineno}: {called}() with a name computed at run time; "
                       f"gdig cannot tell which code a stage runs through it (import the module by name)")


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
            units += _imported(module, n)
        elif isinstance(n, ast.Call):
            units += _dynamic(module, n)
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name):
            bound = top.get(n.value.id)
            if isinstance(bound, (ast.Import, ast.ImportFrom)):
                found = _imported(module, bound, n.value.id)
                if all(name is None for _, name in found):
                    bases.add(id(n.value))
                    units += [(m, n.attr) for m, _ in found]
    for n in _walk(node):
        if isinstance(n, ast.Name) and n.id in top and top[n.id] is not node and id(n) not in bases:
            bound = top[n.id]
            units += _imported(module, bound, n.id) if isinstance(bound, (ast.Import, ast.ImportFrom)) else [(module, n.id)]
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
