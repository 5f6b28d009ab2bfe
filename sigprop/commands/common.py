"""Options shared by the sub-commands (the spec options are declared in :mod:`sigprop.commands.options` and
re-exported here), output helpers, and atomic writes."""

from __future__ import annotations

import math
from enum import Enum
from typing import Annotated

import numpy as np
import typer

from sigprop.commands.options import BY_NAME, Attention, Norm, build_spec, spec_options  # noqa: F401  (re-exported)
from sigprop.io import dumps, jsonable, write_atomic  # noqa: F401  (re-exported for the commands)


class Format(str, Enum):
    text = "text"
    json = "json"


# the per-option aliases of earlier versions, derived from the one declaration in sigprop.commands.options
# (commands take the spec options with @spec_options; these remain for code that imports them)
(Depth, NormO, AttentionO, Activation, Beta, QKStd, AlphaSA, AlphaMLP, SigmaW2, SigmaV2, SigmaB2, SigmaBV2, SeqLen,
 Rho0, Causal) = (BY_NAME[n].annotation for n in (
    "depth", "norm", "attention", "activation", "beta", "qk_std", "alpha_sa", "alpha_mlp", "sigma_w2", "sigma_v2",
    "sigma_b2", "sigma_bv2", "seq_len", "rho0", "causal"))
Asymptotic = Annotated[bool, typer.Option("--asymptotic", help="the paper's T→∞ theory instead of exact finite T")]
FormatO = Annotated[Format, typer.Option("--format", help="text (tables) or json (stdout)")]


def parse_range(name: str, values: list[float] | tuple | None, default: tuple[float, float, int]) -> np.ndarray:
    """``lo hi n`` → ``linspace(lo, hi, n)``, with a clear error naming the option."""
    lo, hi, n = default if not values else values
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        raise ValueError(f"{name} needs lo < hi (finite); got {lo} {hi}")
    if int(n) != n or not 1 <= int(n) <= 2000:
        raise ValueError(f"{name} needs an integer count n in [1, 2000]; got {n}")
    return np.linspace(lo, hi, int(n))
