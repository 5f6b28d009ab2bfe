"""The figure registry: :func:`register`, :func:`reproduce`, and the helpers every figure uses to state its
claims (:func:`claim`) and write its outputs (:func:`write_figure`).

:data:`REGISTRY` maps a figure name to ``fn(out: Path, full: bool, seeds: int | None, progress: bool) -> dict``;
each writes ``out/NAME.png`` and ``out/NAME.json`` (atomically) and returns the JSON payload, which holds
the settings, the theory, the measurement and ``claims``: for each claim of the paper behind the figure,
whether it held at this size, with the numbers. Add a figure with the :func:`register` decorator::

    @register("fig6", help="training: vanilla vs gain-controlled")
    def fig6(out, full, seeds, progress): ...

The figure modules (:mod:`~sigprop.experiments.reproduce`, :mod:`~sigprop.experiments.training`,
:mod:`~sigprop.experiments.fig3c`) register theirs when imported; ``sigprop/experiments/__init__.py``
imports them all, and Python runs that file before any module of the package, so the registry is full
whenever :func:`reproduce` can be called. This module imports no figure module (no import cycle).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sigprop.io import dumps, jsonable, write_atomic
from sigprop.plot import pyplot, savefig_atomic

__all__ = ["REGISTRY", "HELP", "register", "reproduce", "available", "claim", "write_figure"]

FigureFn = Callable[[Path, bool, "int | None", bool], dict]
REGISTRY: dict[str, FigureFn] = {}
HELP: dict[str, str] = {}


def register(name: str, *, help: str = "") -> Callable[[FigureFn], FigureFn]:  # noqa: A002
    """Decorator adding ``fn`` to :data:`REGISTRY` under ``name`` (re-registering replaces it)."""
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"figure name must be alphanumeric; got {name!r}")

    def deco(fn: FigureFn) -> FigureFn:
        REGISTRY[name] = fn
        HELP[name] = help or (fn.__doc__ or "").strip().split("\n")[0]
        return fn

    return deco


def available() -> list[str]:
    """The registered figure names, sorted."""
    return sorted(REGISTRY)


def reproduce(name: str, out: str | Path = "sigprop-out", *, full: bool = False, seeds: int | None = None,
              progress: bool = True) -> dict:
    """Run figure ``name`` and return its payload (also written to ``out/name.json``, with its wall time)."""
    if name not in REGISTRY:
        raise ValueError(f"unknown figure {name!r}; known: {', '.join(available())}")
    if seeds is not None and (not isinstance(seeds, int) or isinstance(seeds, bool) or not 1 <= seeds <= 100):
        raise ValueError(f"seeds must be an integer in [1, 100]; got {seeds!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    payload = REGISTRY[name](out, full, seeds, progress)
    # the figure's wall time on this machine goes into its JSON (the CPU defaults are sized for ≤ 15 min)
    payload["wall_s"] = round(time.perf_counter() - t0, 2)
    path = out / f"{name}.json"
    if path.exists():
        write_atomic(path, dumps(payload))
    return payload


def claim(text: str, held: bool, **numbers: Any) -> dict[str, Any]:
    """One claim of the paper checked by a figure: its text, whether it held, and the numbers behind it."""
    return {"claim": text, "held": bool(held), **numbers}


def write_figure(out: Path, name: str, payload: dict, fig) -> dict:
    """Write ``out/NAME.png`` (and close the figure) and ``out/NAME.json``; returns the JSON-ready payload
    with its ``files``."""
    payload = jsonable(payload)
    payload["files"] = {"png": str(out / f"{name}.png"), "json": str(out / f"{name}.json")}
    savefig_atomic(fig, out / f"{name}.png", dpi=120)
    pyplot().close(fig)
    write_atomic(out / f"{name}.json", dumps(payload))
    return payload
