"""Function length (issue 11): no function or method in ``sigprop/`` is longer than :data:`MAX_LINES` lines
unless a comment says why.

Length is ``end_lineno − lineno + 1`` of the ``def`` node: from the ``def`` line to the last line of the body,
docstring and comments included, decorators excluded. A long function is allowed when the ``def`` line, or
the line just above it (above its first decorator when it has some), holds a comment containing ``long:``
followed by a reason, e.g. ``# long: one typer signature, an option a line``.

The checker is tested on small synthetic sources first, so a checker that sees nothing cannot pass.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "sigprop"
MAX_LINES = 80
_REASON = re.compile(r"#.*\blong:\s*\S")


def long_functions(source: str, limit: int = MAX_LINES) -> list[tuple[int, str, int]]:
    """``(line, name, length)`` of every function/method longer than ``limit`` lines without a
    ``# long: <reason>`` comment on its ``def`` line or the line above it (or above its decorators)."""
    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        length = node.end_lineno - node.lineno + 1
        if length <= limit:
            continue
        top = min([node.lineno] + [d.lineno for d in node.decorator_list])
        near = [lines[node.lineno - 1]] + ([lines[top - 2]] if top >= 2 else [])
        if not any(_REASON.search(text) for text in near):
            found.append((node.lineno, node.name, length))
    return found


def _body(n: int) -> str:
    return "".join(f"    x{i} = {i}\n" for i in range(n))


def test_checker_counts_def_to_last_line():
    short = "def f():\n" + _body(79)  # 80 lines in all
    assert long_functions(short) == []
    assert long_functions("def f():\n" + _body(80)) == [(1, "f", 81)]


def test_checker_sees_methods_and_nested_functions():
    src = "class A:\n    def m(self):\n" + _body(90).replace("    ", "        ")
    assert long_functions(src) == [(2, "m", 91)]
    nested = "def outer():\n    def inner():\n" + _body(85).replace("    ", "        ") + "    return inner\n"
    assert sorted(name for _, name, _ in long_functions(nested)) == ["inner", "outer"]


def test_checker_accepts_a_reason_only():
    body = _body(90)
    assert long_functions("# long: a declared table, one entry a line\ndef f():\n" + body) == []
    assert long_functions("def f():  # long: one CLI signature\n" + body) == []
    assert long_functions("# long: reason\n@decorator\n@other(1)\ndef f():\n" + body) == []
    # no reason, or the word without one, or a comment two lines above: still reported
    assert long_functions("# long:\ndef f():\n" + body) == [(2, "f", 91)]
    assert long_functions("# long: why\n\ndef f():\n" + body) == [(3, "f", 91)]
    assert long_functions("# a long function\ndef f():\n" + body) == [(2, "f", 91)]


def test_no_long_function_without_a_reason():
    files = sorted(ROOT.rglob("*.py"))
    assert len(files) > 20  # the walk sees the package
    bad = [f"{path.relative_to(ROOT.parent)}:{line}: {name} is {n} lines (> {MAX_LINES}; add '# long: <why>' "
           "or split it)"
           for path in files for line, name, n in long_functions(path.read_text(encoding="utf-8"))]
    assert not bad, "\n".join(bad)
