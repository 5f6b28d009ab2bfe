"""One-way layers (issue 11): parse every module of the package with ``ast`` and check its imports.

Layers: ``cli → experiments → training / validate / diagram → theory / nn → spec, io``. Checked here:

1. the core layers (``theory/``, ``nn/``, ``training/``, ``data/``, ``spec``, ``io``) import neither the CLI
   (``sigprop.cli``, ``sigprop.commands``) nor ``sigprop.experiments``;
2. no library module (anything but ``sigprop.cli`` and ``sigprop.commands``) imports the CLI;
3. no module uses a ``_private`` name of another sigprop module: ``from sigprop.x import _name``,
   ``import sigprop._x``, or ``m._name`` where ``m`` is a sigprop module bound by an import (dunder names
   such as ``__version__`` are fine; a module may use its own private names).

The checker itself is tested on small synthetic sources, so a violation cannot slip through a checker
that sees nothing.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "sigprop"
CORE = ("sigprop.theory", "sigprop.nn", "sigprop.training", "sigprop.data", "sigprop.spec", "sigprop.io")
CLI = ("sigprop.cli", "sigprop.commands")
EXPERIMENTS = ("sigprop.experiments",)


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path = ROOT) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _resolve(mod: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = mod.split(".") if is_package else mod.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(source: str, mod: str, is_package: bool, known: set[str]) -> list[tuple[int, str, str | None]]:
    """``(line, module, name)`` for every import of a sigprop module in ``source`` (``name`` is the imported
    attribute for ``from m import name`` when ``m.name`` is not itself a module; ``None`` otherwise)."""
    return [(line, target, name) for line, target, name, kind in _uses(source, mod, is_package, known)
            if kind == "import"]


def _uses(source: str, mod: str, is_package: bool, known: set[str]) -> list[tuple[int, str, str | None, str]]:
    """The imports (kind ``"import"``) and the private attribute reads ``alias._attr`` on a sigprop module
    bound by an import (kind ``"attribute"``)."""
    tree = ast.parse(source)
    found: list[tuple[int, str, str | None, str]] = []
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "sigprop":
                    found.append((node.lineno, a.name, None, "import"))
                    if a.asname:
                        aliases[a.asname] = a.name
        elif isinstance(node, ast.ImportFrom):
            src = _resolve(mod, is_package, node)
            if src.split(".")[0] != "sigprop":
                continue
            for a in node.names:
                sub = f"{src}.{a.name}"
                if sub in known:
                    found.append((node.lineno, sub, None, "import"))
                    aliases[a.asname or a.name] = sub
                else:
                    found.append((node.lineno, src, a.name, "import"))
        elif isinstance(node, ast.Call) and _is_import_module(node.func) and node.args:
            target = _literal_module(node.args[0])  # importlib.import_module("sigprop.x") hides an import
            if target and target.split(".")[0] == "sigprop":
                found.append((node.lineno, target, None, "import"))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and _private(node.attr)):
            found.append((node.lineno, aliases[node.value.id], node.attr, "attribute"))
    return found


def _is_import_module(func: ast.expr) -> bool:
    return (isinstance(func, ast.Attribute) and func.attr == "import_module") or \
        (isinstance(func, ast.Name) and func.id == "import_module")


def _literal_module(arg: ast.expr) -> str | None:
    """The module named by a string constant, or the constant prefix of an f-string (``f"sigprop.x.{n}"``
    names package ``sigprop.x``)."""
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
        prefix = str(arg.values[0].value)
        return prefix.rstrip(".") if prefix.endswith(".") else prefix.rsplit(".", 1)[0]
    return None


def violations(root: Path = ROOT) -> list[str]:
    mods = modules(root)
    known = set(mods)
    out: list[str] = []
    for mod, path in mods.items():
        rel = path.relative_to(root.parent)
        for line, target, name, kind in _uses(path.read_text(), mod, path.name == "__init__.py", known):
            where = f"{rel}:{line}"
            if kind == "import" and _within(mod, CORE) and _within(target, CLI + EXPERIMENTS):
                out.append(f"{where}: core module {mod} imports {target}")
            elif kind == "import" and not _within(mod, CLI) and _within(target, CLI):
                out.append(f"{where}: library module {mod} imports the CLI ({target})")
            if target == mod:
                continue
            if any(_private(part) for part in target.split(".")):
                out.append(f"{where}: {mod} imports the private module {target}")
            elif name is not None and _private(name):
                out.append(f"{where}: {mod} uses the private name {target}.{name}")
    return out


# ----------------------------------------------------------------------------- the checker on examples
def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "sigprop"
    for rel, text in {"__init__.py": "", **files}.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def test_checker_finds_each_kind_of_violation(tmp_path):
    root = _tree(tmp_path, {
        "io.py": "def _helper(): pass\nx = _helper()\n",
        "theory/__init__.py": "",
        "theory/rem.py": "from sigprop.io import _helper\n",
        "theory/blocks.py": "from sigprop.theory import rem\nrem._secret\n",
        "nn/__init__.py": "from ..experiments import fig\n",
        "experiments/__init__.py": "",
        "experiments/fig.py": "import sigprop.commands.common as c\nc.__doc__\n",
        "commands/__init__.py": "",
        "commands/common.py": "from sigprop.io import __all__\nfrom sigprop.theory.rem import stats\n",
        "training/__init__.py": "from sigprop.cli import main\n",
        "cli.py": "import sigprop._hidden\n",
        "data/__init__.py": "import importlib\nm = importlib.import_module(f'sigprop.commands.{1}')\n",
        "spec.py": "from importlib import import_module\nimport_module('sigprop.experiments')\n",
    })
    got = violations(root)
    text = "\n".join(got)
    assert "theory/rem.py:1: sigprop.theory.rem uses the private name sigprop.io._helper" in text
    assert "theory/blocks.py:2: sigprop.theory.blocks uses the private name sigprop.theory.rem._secret" in text
    assert "nn/__init__.py:1: core module sigprop.nn imports sigprop.experiments.fig" in text
    assert "experiments/fig.py:1: library module sigprop.experiments.fig imports the CLI" in text
    assert "training/__init__.py:1: core module sigprop.training imports sigprop.cli" in text
    assert "cli.py:1: sigprop.cli imports the private module sigprop._hidden" in text
    assert "data/__init__.py:2: core module sigprop.data imports sigprop.commands" in text  # through importlib
    assert "spec.py:2: core module sigprop.spec imports sigprop.experiments" in text
    assert len(got) == 8, got  # io's own _helper, dunder names and public imports are fine


def test_relative_imports_resolve():
    src = "from . import rem\nfrom .rem import _x\nfrom ..io import y\n"
    known = {"sigprop.theory.rem", "sigprop.io"}
    got = imports(src, "sigprop.theory.blocks", False, known)
    assert (1, "sigprop.theory.rem", None) in got
    assert (2, "sigprop.theory.rem", "_x") in got
    assert (3, "sigprop.io", "y") in got
    assert imports("from .rem import a\n", "sigprop.theory", True, known) == [(1, "sigprop.theory.rem", "a")]


# ----------------------------------------------------------------------------- the package itself
def test_package_layers_are_one_way():
    assert len(modules()) > 20  # the walk sees the package
    bad = violations()
    assert not bad, "layering violations:\n" + "\n".join(bad)


@pytest.mark.parametrize("prefix", CORE)
def test_core_layers_exist(prefix):
    """Every core layer named in the rule is a real module or package (a renamed one would pass vacuously)."""
    assert any(_within(m, (prefix,)) for m in modules()), prefix
