"""Options shared by the sub-commands: the spec options (one place, so every command reads them alike),
output helpers, and atomic writes."""

from __future__ import annotations

import math
from enum import Enum
from typing import Annotated, Any

import numpy as np
import typer

from sigprop.io import dumps, jsonable, write_atomic  # noqa: F401  (re-exported for the commands)
from sigprop.spec import Spec, beta_from_std


class Norm(str, Enum):
    post = "post"
    pre = "pre"


class Attention(str, Enum):
    softmax = "softmax"
    centred = "centred"


class Format(str, Enum):
    text = "text"
    json = "json"


G = "Architecture (conventions: docs/theory.md §1)"
Depth = Annotated[int, typer.Option("--depth", "-L", help="number of blocks L", rich_help_panel=G)]
NormO = Annotated[Norm, typer.Option("--norm", help="post-LN (BERT) or pre-LN", rich_help_panel=G)]
AttentionO = Annotated[Attention, typer.Option("--attention", help="softmax or centred (gain-controlled)", rich_help_panel=G)]
Activation = Annotated[str, typer.Option("--activation", help="relu, gelu, silu, tanh, erf, identity", rich_help_panel=G)]
Beta = Annotated[float, typer.Option("--beta", help="β: W_Q, W_K ~ N(0, β sqrt(ln T)/d); Var(logit) = β² ln T", rich_help_panel=G)]
QKStd = Annotated[float | None, typer.Option("--qk-std", help="plain std of W_Q, W_K (e.g. HF initializer_range); converted to β", rich_help_panel=G)]
AlphaSA = Annotated[float, typer.Option("--alpha-sa", help="α_SA, skip strength around attention", rich_help_panel=G)]
AlphaMLP = Annotated[float, typer.Option("--alpha-mlp", help="α_MLP, skip strength around the MLP", rich_help_panel=G)]
SigmaW2 = Annotated[float, typer.Option("--sigma-w2", help="σ_w²: MLP weights ~ N(0, σ_w²/fan_in)", rich_help_panel=G)]
SigmaV2 = Annotated[float, typer.Option("--sigma-v2", help="σ_v²: W_V ~ N(0, σ_v²/d)", rich_help_panel=G)]
SigmaB2 = Annotated[float, typer.Option("--sigma-b2", help="σ_b²: bias variance (MLP; value too unless --sigma-bv2)", rich_help_panel=G)]
SigmaBV2 = Annotated[float | None, typer.Option("--sigma-bv2", help="σ_bv²: value-bias variance (default: σ_b²; 0 = the paper's no-value-bias model, Fig 4)", rich_help_panel=G)]
SeqLen = Annotated[int, typer.Option("--seq-len", "-T", help="T: sequence length (keys per row; ln T in the init)", rich_help_panel=G)]
Rho0 = Annotated[float, typer.Option("--rho0", help="ρ₀: mean cosine of the tokens entering block 1", rich_help_panel=G)]
Causal = Annotated[bool, typer.Option("--causal", help="decoder: row t sees t keys", rich_help_panel=G)]
Asymptotic = Annotated[bool, typer.Option("--asymptotic", help="the paper's T→∞ theory instead of exact finite T")]
FormatO = Annotated[Format, typer.Option("--format", help="text (tables) or json (stdout)")]


def build_spec(*, depth: int, norm: Norm | str, attention: Attention | str, activation: str, beta: float,
               qk_std: float | None, alpha_sa: float, alpha_mlp: float, sigma_w2: float, sigma_v2: float,
               sigma_b2: float, seq_len: int, rho0: float, causal: bool, width: int = 512, heads: int = 1,
               sigma_bv2: float | None = None, **_: Any) -> Spec:
    """A scalar :class:`Spec` from CLI options (``--qk-std`` is converted to β; giving it together with
    ``--beta`` is refused by :func:`sigprop.cli.main`)."""
    if qk_std is not None:
        beta = beta_from_std(qk_std, width=width, seq_len=seq_len)
    return Spec(depth=depth, norm=getattr(norm, "value", norm), attention=getattr(attention, "value", attention),
                activation=activation, beta=beta, alpha_sa=alpha_sa, alpha_mlp=alpha_mlp, sigma_w2=sigma_w2,
                sigma_v2=sigma_v2, sigma_b2=sigma_b2, sigma_bv2=sigma_bv2, seq_len=seq_len, rho0=rho0, causal=causal, width=width,
                heads=heads)


def parse_range(name: str, values: list[float] | tuple | None, default: tuple[float, float, int]) -> np.ndarray:
    """``lo hi n`` → ``linspace(lo, hi, n)``, with a clear error naming the option."""
    lo, hi, n = default if not values else values
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        raise ValueError(f"{name} needs lo < hi (finite); got {lo} {hi}")
    if int(n) != n or not 1 <= int(n) <= 2000:
        raise ValueError(f"{name} needs an integer count n in [1, 2000]; got {n}")
    return np.linspace(lo, hi, int(n))
