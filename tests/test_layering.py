"""The package is layered and has no import cycle; the files shipped with models import only each other.

Layers, lowest first (README, Layout). A module may import its own component (``hf_longrope2.search.*`` for
``search``) and components of lower layers, never a component of its own layer or above: so the three stages
never import each other, and nothing imports ``cli``. The package root (the public API) is imported by nobody.
Imports are read with ``ast`` from the source, function-local ones included; ``cli``'s lazy
``importlib.import_module`` of its verb modules is not an import statement and is not counted.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import hf_longrope2

PACKAGE = Path(hf_longrope2.__file__).parent
LAYERS = [
    {"modeling"},
    {"utils"},
    {"factors", "losses", "plots"},
    {"extension"},
    {"data", "publish"},
    {"tiny"},
    {"search", "midtrain", "evaluation"},
    {"pipeline"},
    {"demo", "selfcheck", "pretrain_tiny"},
    {"cli"},
]
LAYER = {component: rank for rank, group in enumerate(LAYERS) for component in group}
SHIPPED = ("rope", "windows", "rotary", "configuration_longrope2", "modeling_longrope2")
SHIPPED_MAY_IMPORT = {"__future__", "torch", "transformers", "huggingface_hub", "functools", "math", "warnings",
                      "dataclasses", "typing", "collections"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str) -> list[tuple[str, int, bool]]:
    """(imported hf_longrope2 module, line, inside a function) for every internal import of module `name`."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    local = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
             for n in ast.walk(f)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names if a.name.split(".")[0] == "hf_longrope2"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] != "hf_longrope2":
                continue
            # `from pkg import sub` imports the submodule `pkg.sub` when there is one
            targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in MODULES else module for a in node.names]
        else:
            continue
        found += [(t, node.lineno, id(node) in local) for t in targets]
    return found


def _component(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else None  # None: the package root


def test_every_module_has_a_layer():
    assert {_component(m) for m in MODULES} - {None} == set(LAYER)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_go_down_the_layers(name):
    mine = _component(name)
    if mine is None:
        return  # the public API may import anything
    for target, line, _ in _imports(name):
        theirs = _component(target)
        assert theirs is not None, f"{name}:{line} imports the package root; import the module that defines it"
        assert theirs == mine or LAYER[theirs] < LAYER[mine], (
            f"{name}:{line} imports {target}: layer {LAYER[theirs]} ({theirs}) is not below {LAYER[mine]} ({mine})"
        )


def test_no_import_cycle():
    graph = {name: {t for t, _, _ in _imports(name) if t in MODULES and t != name} for name in MODULES}
    state: dict[str, int] = {}  # 1: on the stack, 2: done

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_files_import_only_each_other(name):
    tree = ast.parse((PACKAGE / "modeling" / f"{name}.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            assert node.level == 1 and node.module in SHIPPED, f"{name}.py:{node.lineno}: relative import {node.module}"
        elif isinstance(node, ast.ImportFrom):
            assert node.module.split(".")[0] in SHIPPED_MAY_IMPORT, f"{name}.py:{node.lineno}: {node.module}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                assert alias.name.split(".")[0] in SHIPPED_MAY_IMPORT, f"{name}.py:{node.lineno}: {alias.name}"


def test_nothing_imports_cli():
    importers = sorted(n for n in MODULES if _component(n) != "cli"
                       for t, _, _ in _imports(n) if _component(t) == "cli")
    assert importers == []


def _local_imports(name: str) -> list[tuple[int, str]]:
    """(line, source line) of each block of function-local imports without a reason comment."""
    path = MODULES[name]
    source = path.read_text().splitlines()
    tree = ast.parse(path.read_text())
    missing = []
    for func in ast.walk(tree):
        if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for body in [getattr(n, field) for n in ast.walk(func) for field in ("body", "orelse", "finalbody", "handlers")
                     if isinstance(getattr(n, field, None), list)]:
            block: list[ast.stmt] = []
            for stmt in [*body, None]:
                if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                    block.append(stmt)
                    continue
                if block:
                    lines = range(block[0].lineno - 1, block[-1].end_lineno + 1)  # the line above, and the block
                    if not any("#" in source[i - 1] for i in lines if i >= 1):
                        missing.append((block[0].lineno, source[block[0].lineno - 1].strip()))
                    block = []
    return missing


@pytest.mark.parametrize("name", sorted(MODULES))
def test_function_local_imports_say_why(name):
    """Imports inside functions are for optional dependencies or start-up cost, and say which."""
    assert _local_imports(name) == []
