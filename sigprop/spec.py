"""One architecture description, two realisations.

A :class:`Spec` describes a stack of transformer blocks at initialisation. The same object is read by
the analytic theory (:mod:`sigprop.theory`) and by the PyTorch twin (:mod:`sigprop.nn`), so the two
cannot drift apart.

Conventions (Giorlandino & Goldt, docs/theory.md §1) — stated loudly because every other library differs:

* ``beta`` (β): query/key scale. Entries of ``W_Q`` and ``W_K`` are i.i.d. ``N(0, σ²)`` with
  ``σ = sqrt(β) (ln T)^{1/4} / sqrt(d)`` where ``d`` is the model width and logits are scaled by
  ``1/sqrt(d_h)`` per head. Then ``Var(a_ts) = β² ln T q²`` **for any number of heads** (sigprop's
  head-count-independent convention; the authors' code used ``1/sqrt(d_h)``, which is the same for one
  head).
* ``seq_len`` (T): the sequence length that enters the initialisation through ``ln T`` and the number
  of keys each query row sees.
* ``alpha_sa``, ``alpha_mlp`` (α): multiply the **skip** path: post-LN ``x ← LN(α x + F(x))``, pre-LN
  ``x ← α x + F(LN x)``.
* ``sigma_v2`` (σ_v²), ``sigma_w2`` (σ_w²): weight variances times width (``W ~ N(0, σ²/d)``);
  ``sigma_b2`` (σ_b²): bias variance of the MLP (and of the value layer unless ``sigma_bv2`` is set).
* ``rho0`` (ρ₀), ``q0``: the input state, mean cosine similarity and mean squared norm per dimension
  of the tokens entering the first block.

Numeric fields may be numpy arrays that broadcast against each other, so a whole parameter grid is one
``Spec``. Invalid values raise :class:`ValueError` naming the field and its allowed range.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

ArrayLike = float | int | np.ndarray

NORMS = ("post", "pre")
ATTENTIONS = ("softmax", "centred")
#: plain MLP activations ``W₂ φ(W₁ x + b₁) + b₂`` (the theory has a Gaussian kernel for each)
ACTIVATIONS = ("relu", "gelu", "silu", "tanh", "erf", "identity")
#: gated MLPs ``W₂ (φ(W_g x + b_g) ⊙ (W_u x + b_u)) + b₂`` and their gate nonlinearity φ
GATED = {"swiglu": "silu", "geglu": "gelu"}
BLOCKS = ("sequential", "parallel")
NORM_TYPES = ("layernorm", "rmsnorm")

#: numeric fields that may be arrays (broadcast together), with (lower, upper, lower_inclusive)
ARRAY_FIELDS: dict[str, tuple[float, float, bool]] = {
    "beta": (0.0, math.inf, True),
    "alpha_sa": (0.0, math.inf, True),
    "alpha_mlp": (0.0, math.inf, True),
    "sigma_w2": (0.0, math.inf, False),
    "sigma_v2": (0.0, math.inf, True),
    "sigma_b2": (0.0, math.inf, True),
    "sigma_bv2": (0.0, math.inf, True),
    "rho0": (0.0, 1.0, True),
    "q0": (0.0, math.inf, False),
    "sigma_w2_out": (0.0, math.inf, False),
}


#: array fields whose ``None`` means "the same as another field"
_OPTIONAL_ARRAYS = {"sigma_bv2": "sigma_b2", "sigma_w2_out": "sigma_w2"}


def _range_text(lo: float, hi: float, lo_inc: bool) -> str:
    left = "[" if lo_inc else "("
    right = "]" if math.isfinite(hi) else ")"
    return f"{left}{lo:g}, {hi:g}{right}"


def _is_int_in(v: Any, lo: int, hi: int) -> bool:
    """``v`` is an integer (not a bool) with ``lo ≤ v ≤ hi``."""
    return not isinstance(v, bool) and isinstance(v, (int, np.integer)) and lo <= int(v) <= hi


def _check_array(name: str, value: Any) -> ArrayLike:
    lo, hi, lo_inc = ARRAY_FIELDS[name]
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number or an array of numbers in {_range_text(lo, hi, lo_inc)}; got {value!r}") from None
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty")
    bad = ~np.isfinite(arr) | (arr > hi) | ((arr < lo) if lo_inc else (arr <= lo))
    if np.any(bad):
        first = arr[bad].flat[0]
        raise ValueError(f"{name} must be finite and in {_range_text(lo, hi, lo_inc)}; got {first:g}")
    return float(arr) if arr.ndim == 0 else arr


@dataclass(frozen=True)
class Spec:
    """Validated, immutable description of a transformer stack at initialisation.

    Parameters
    ----------
    depth : number of blocks L (1 ≤ L ≤ 100 000).
    norm : ``"post"`` (BERT: ``LN(αx + F(x))``) or ``"pre"`` (``αx + F(LN x)``).
    attention : ``"softmax"`` or ``"centred"`` (gain-controlled: ``Σ_s (A_ts − 1/T) v_s``, docs/theory.md §6).
    activation : MLP nonlinearity, a name from :data:`ACTIVATIONS`, a gated MLP from :data:`GATED`
        (``swiglu``: ``W₂ (SiLU(W_g x + b_g) ⊙ (W_u x + b_u)) + b₂``, ``geglu`` with GELU) or a vectorised
        callable ``φ(np.ndarray) -> np.ndarray``.
    beta : β ≥ 0, query/key scale (see module docstring).
    alpha_sa, alpha_mlp : α ≥ 0, skip-path strengths.
    sigma_w2 : σ_w² > 0, MLP input weight variance × fan-in (W₁, and W_g, W_u of a gated MLP).
    sigma_w2_out : σ_w,out² > 0, MLP output weight variance × fan-in (W₂ ~ N(0, σ_w,out²/d_ff));
        ``None`` means ``sigma_w2``.
    sigma_v2 : σ_v² ≥ 0, value weight variance × width.
    sigma_b2 : σ_b² ≥ 0, bias variance (MLP; value too unless ``sigma_bv2`` is given).
    sigma_bv2 : value-bias variance; ``None`` means ``sigma_b2``.
    seq_len : T ≥ 2, sequence length used in the initialisation (``ln T``) and number of keys.
    heads : number of attention heads (≥ 1, divides ``width``). β does not depend on it.
    width : model width d (used by the torch twin and by gradient theory).
    mlp_ratio : MLP hidden width / d (torch twin; the theory needs it large only).
    causal : decoder (row t sees t keys, docs/theory.md §7) instead of encoder.
    rho0 : ρ₀ ∈ [0, 1], mean cosine similarity of the tokens entering block 1.
    q0 : q₀ > 0, mean squared norm per dimension entering block 1 (1 after an embedding LayerNorm;
        GPT-2's pre-LN stream enters with q ≈ 8·10⁻⁴).
    block : ``"sequential"`` (attention then MLP) or ``"parallel"`` (GPT-NeoX/Pythia, GPT-J:
        ``x ← α x + SA(LN₁ x) + MLP(LN₂ x)``; the skip strength is ``alpha_sa``).
    norm_type : ``"layernorm"`` or ``"rmsnorm"`` (no mean subtraction; the same map up to O(1/d)).
    rope_fraction : fraction of each head's dimensions rotated by RoPE (0 = no rotary embedding).
    rope_theta : RoPE base θ (frequencies θ^{-2i/r} over the r rotated dimensions of a head).
    kv_heads : number of key/value heads (grouped-query attention); ``None`` means ``heads``.
    window : sliding-window attention: a (causal) row sees at most ``window`` keys; ``None`` = no window.
    """

    depth: int = 12
    norm: Literal["post", "pre"] = "post"
    attention: Literal["softmax", "centred"] = "softmax"
    activation: str | Callable[[np.ndarray], np.ndarray] = "relu"
    beta: ArrayLike = 1.0
    alpha_sa: ArrayLike = 1.0
    alpha_mlp: ArrayLike = 1.0
    sigma_w2: ArrayLike = 0.2
    sigma_v2: ArrayLike = 0.2
    sigma_b2: ArrayLike = 4e-4
    sigma_bv2: ArrayLike | None = None
    seq_len: int = 512
    heads: int = 1
    width: int = 512
    mlp_ratio: float = 1.0
    causal: bool = False
    rho0: ArrayLike = 0.03
    q0: ArrayLike = 1.0
    sigma_w2_out: ArrayLike | None = None
    block: Literal["sequential", "parallel"] = "sequential"
    norm_type: Literal["layernorm", "rmsnorm"] = "layernorm"
    rope_fraction: float = 0.0
    rope_theta: float = 10000.0
    kv_heads: int | None = None
    window: int | None = None
    _frozen_arrays: tuple = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        def setf(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        if not _is_int_in(self.depth, 1, 100_000):
            raise ValueError(f"depth must be an integer in [1, 100000]; got {self.depth!r}")
        setf("depth", int(self.depth))
        for name, allowed in (("norm", NORMS), ("attention", ATTENTIONS), ("block", BLOCKS), ("norm_type", NORM_TYPES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}; got {getattr(self, name)!r}")
        if isinstance(self.activation, str):
            names = ACTIVATIONS + tuple(GATED)
            if self.activation.lower() not in names:
                raise ValueError(f"activation must be one of {names} or a callable; got {self.activation!r}")
            setf("activation", self.activation.lower())
        elif not callable(self.activation):
            raise ValueError(f"activation must be a name or a callable; got {self.activation!r}")
        for name, lo, hi in (("seq_len", 2, 10**15), ("heads", 1, 4096), ("width", 1, 10**7)):
            v = getattr(self, name)
            if not _is_int_in(v, lo, hi):
                raise ValueError(f"{name} must be an integer in [{lo}, {hi}]; got {v!r}")
            setf(name, int(v))
        if self.width % self.heads:
            raise ValueError(f"heads must divide width; got heads={self.heads}, width={self.width}")
        if not (isinstance(self.mlp_ratio, (int, float)) and 0 < float(self.mlp_ratio) <= 64):
            raise ValueError(f"mlp_ratio must be in (0, 64]; got {self.mlp_ratio!r}")
        setf("causal", bool(self.causal))
        for name, flo, fhi in (("rope_fraction", 0.0, 1.0), ("rope_theta", 1.0, 1e12)):
            num = getattr(self, name)
            if isinstance(num, bool) or not isinstance(num, (int, float, np.integer, np.floating)) or not flo <= float(num) <= fhi:
                raise ValueError(f"{name} must be a number in [{flo:g}, {fhi:g}]; got {num!r}")
            setf(name, float(num))
        optional_ints = (
            ("kv_heads", self.heads, lambda v: self.heads % int(v) == 0,
             f"kv_heads must be an integer in [1, heads={self.heads}] that divides heads"),
            ("window", 10**15, lambda v: True, "window must be an integer ≥ 1 (keys a row may see) or None"),
        )
        for name, hi, ok, rule in optional_ints:
            v = getattr(self, name)
            if v is None:
                continue
            if not (_is_int_in(v, 1, hi) and ok(v)):
                raise ValueError(f"{rule}; got {v!r}")
            setf(name, int(v))
        for name in ARRAY_FIELDS:
            v = getattr(self, name)
            if name in _OPTIONAL_ARRAYS and v is None:
                continue
            v = _check_array(name, v)
            if isinstance(v, np.ndarray):
                v = v.copy()
                v.setflags(write=False)
            setf(name, v)
        try:
            np.broadcast_shapes(*(np.shape(getattr(self, n)) for n in ARRAY_FIELDS if getattr(self, n) is not None))
        except ValueError:
            shapes = {n: np.shape(v) for n in ARRAY_FIELDS if (v := getattr(self, n)) is not None and np.ndim(v)}
            raise ValueError(f"array fields do not broadcast together: {shapes}") from None

    # ------------------------------------------------------------------ helpers
    @property
    def shape(self) -> tuple[int, ...]:
        """Broadcast shape of the numeric fields (``()`` for a single point)."""
        return np.broadcast_shapes(*(np.shape(getattr(self, n)) for n in ARRAY_FIELDS if getattr(self, n) is not None))

    @property
    def bias_v2(self) -> ArrayLike:
        """Value-bias variance actually used (``sigma_bv2`` or ``sigma_b2``)."""
        return self.sigma_b2 if self.sigma_bv2 is None else self.sigma_bv2

    @property
    def w2_out(self) -> ArrayLike:
        """MLP output-weight variance actually used (``sigma_w2_out`` or ``sigma_w2``)."""
        return self.sigma_w2 if self.sigma_w2_out is None else self.sigma_w2_out

    @property
    def n_kv_heads(self) -> int:
        """Key/value heads actually used (``kv_heads`` or ``heads``)."""
        return self.heads if self.kv_heads is None else self.kv_heads

    @property
    def gated(self) -> bool:
        """Whether the MLP is gated (``swiglu``/``geglu``)."""
        return isinstance(self.activation, str) and self.activation in GATED

    @property
    def is_grid(self) -> bool:
        return self.shape != ()

    def replace(self, **changes: Any) -> Spec:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def point(self, index: tuple[int, ...] | int) -> Spec:
        """The scalar spec at ``index`` of a grid spec."""
        shape = self.shape
        out = {}
        for n in ARRAY_FIELDS:
            v = getattr(self, n)
            if v is None:
                continue
            out[n] = float(np.broadcast_to(v, shape)[index])
        return self.replace(**out)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dictionary (arrays become nested lists, a callable activation its name)."""
        d: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name.startswith("_"):
                continue
            v = getattr(self, f.name)
            if isinstance(v, np.ndarray):
                v = v.tolist()
            elif callable(v):
                v = getattr(v, "__name__", "callable")
            d[f.name] = v
        return d

    @property
    def init_std_qk(self) -> float:
        """Std of the W_Q and W_K entries, ``sqrt(β)(ln T)^{1/4}/sqrt(d)`` (:func:`std_from_beta`; scalar β only)."""
        if np.ndim(self.beta):
            raise ValueError("init_std_qk needs a scalar beta")
        return std_from_beta(float(self.beta), width=self.width, seq_len=self.seq_len)

    @property
    def head_dim(self) -> int:
        """d_h = width / heads, the width of one attention head."""
        return self.width // self.heads

    @property
    def rope_dims(self) -> int:
        """r, the rotated dimensions of each head (:func:`rope_dims` of ``head_dim`` and ``rope_fraction``);
        ValueError when ``rope_fraction · d_h`` is odd."""
        return rope_dims(self.head_dim, self.rope_fraction)


# --------------------------------------------------------------------------- conversions
def beta_from_std(std: float, *, width: int, seq_len: int) -> float:
    """β implied by plain ``N(0, std²)`` initialisation of W_Q and W_K (e.g. HuggingFace ``initializer_range``).

    For unit-norm tokens (q = 1, e.g. after LayerNorm) each query/key coordinate has variance
    ``std² · width``; a head of width ``d_h`` with the usual ``1/sqrt(d_h)`` logit scale then gives
    ``Var(a) = (std² · width)²`` whatever the number of heads. Matching ``Var(a) = β² ln T`` gives
    ``β = std² · width / sqrt(ln T)``. Example: BERT-base (std 0.02, width 768, T = 512) has β ≈ 0.123.
    """
    if not (std > 0 and math.isfinite(std)):
        raise ValueError(f"std must be finite and > 0; got {std}")
    if width < 1:
        raise ValueError(f"width must be ≥ 1; got {width}")
    if seq_len < 2:
        raise ValueError(f"seq_len must be ≥ 2; got {seq_len}")
    return std**2 * width / math.sqrt(math.log(seq_len))


def std_from_beta(beta: float, *, width: int, seq_len: int) -> float:
    """Std of W_Q, W_K entries for a given β (sigprop convention, any head count)."""
    if beta < 0:
        raise ValueError(f"beta must be ≥ 0; got {beta}")
    return math.sqrt(beta) * math.log(seq_len) ** 0.25 / math.sqrt(width)


def rope_dims(head_dim: int, fraction: float) -> int:
    """The RoPE convention, written once: a head of width d_h rotates its first ``r = int(f · d_h)``
    dimensions (HuggingFace's rule), and r must be even (dimension i pairs with i + r/2). ValueError
    when ``f`` is outside [0, 1] or r is odd. The theory (:mod:`sigprop.theory.rope`) and the torch twin
    (:class:`sigprop.nn.Rotary`) both read r from here."""
    if not 0.0 <= float(fraction) <= 1.0:
        raise ValueError(f"rope_fraction must be in [0, 1]; got {fraction}")
    r = int(float(fraction) * int(head_dim) + 1e-9)
    if r % 2:
        raise ValueError(f"rope_fraction × head_dim must be an even number of rotated dimensions; got "
                         f"{fraction!r} × {head_dim} = {r}")
    return r


# --------------------------------------------------------------------------- the block recipe
@dataclass(frozen=True)
class Sublayer:
    """One residual update ``x ← N_out(α · x + Σ_b F_b(N_in x))`` of a block (docs/theory.md §3).

    ``branches``: the branch kinds summed on the residual stream (``("attn",)``, ``("mlp",)``, or both
    for a parallel block); ``alpha``: the Spec field holding the skip strength α; ``norm_in``: every branch
    reads a normalised copy of the stream (pre-LN; each branch has its own norm); ``norm_out``: the sum is
    normalised (post-LN). Branches add in quadrature to the skip and to each other (independent random
    output weights), which is what the mean-field map and the torch twin both rely on.
    """

    branches: tuple[str, ...]
    alpha: str
    norm_in: bool
    norm_out: bool


def recipe(spec: Spec) -> tuple[Sublayer, ...]:
    """The sublayers of one block of ``spec``, in order: the one recipe the theory map
    (:func:`sigprop.theory.blocks.block`) and the torch twin (:class:`sigprop.nn.Block`) both follow.

    * sequential post-LN: ``x ← LN(α_SA x + SA(x))``, ``x ← LN(α_MLP x + MLP(x))``;
    * sequential pre-LN: ``x ← α_SA x + SA(LN x)``, ``x ← α_MLP x + MLP(LN x)``;
    * parallel post-LN: ``x ← LN(α_SA x + SA(x) + MLP(x))``;
    * parallel pre-LN (GPT-NeoX, GPT-J): ``x ← α_SA x + SA(LN₁ x) + MLP(LN₂ x)``.
    """
    pre = spec.norm == "pre"
    if spec.block == "parallel":
        return (Sublayer(("attn", "mlp"), "alpha_sa", pre, not pre),)
    return (Sublayer(("attn",), "alpha_sa", pre, not pre), Sublayer(("mlp",), "alpha_mlp", pre, not pre))
