"""Gaussian two-point maps of MLP activations (dual kernels).

For pre-activations ``(u₁, u₂)`` jointly Gaussian with ``Var u_i = q₁`` and ``Cov(u₁, u₂) = p₁ = c q₁``,
the MLP map of docs/theory.md §3.3 needs

    K₁₁(q₁)    = E[φ(u₁)²],
    K₁₂(q₁, c) = E[φ(u₁) φ(u₂)].

Closed forms are used where they exist (ReLU: arc-cosine kernel; erf; identity). Any other activation —
GELU, SiLU, tanh, or a user's vectorised callable — goes through a 2-D polar Gauss–Legendre rule evaluated on a
table over the angle θ = arccos c for each distinct q₁, then interpolated with a cubic spline in θ.
A diagram therefore costs one small table per distinct q₁, never one ``dblquad`` per point.

Gated MLPs (``swiglu``, ``geglu``: ``h = φ(g) ⊙ u`` with independent gate and up projections g, u of the
same variance q₁ and correlation c) have the exact product kernel

    K₁₁ᵍ(q₁)    = E[φ(g)² u²]        = K₁₁^φ(q₁) · q₁,
    K₁₂ᵍ(q₁, c) = E[φ(g)u φ(g')u']   = K₁₂^φ(q₁, c) · c q₁,

because (g, g') and (u, u') are independent Gaussian pairs (:class:`GatedActivation`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import special
from scipy.interpolate import CubicSpline

from sigprop.spec import ACTIVATIONS, GATED

#: every MLP name the theory knows: plain activations, then gated units (the names live in the spec)
NAMES = ACTIVATIONS + tuple(GATED)

#: Nodes of the θ-table (θ = arccos c ∈ [0, π]).
THETA_NODES = 385


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + special.erf(x / math.sqrt(2.0)))


def _silu(x: np.ndarray) -> np.ndarray:
    return x * special.expit(x)


_FUNCS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu": lambda x: np.maximum(x, 0.0),
    "gelu": _gelu,
    "silu": _silu,
    "tanh": np.tanh,
    "erf": special.erf,
    "identity": lambda x: x,
}


def _relu_k12(q1: np.ndarray, c: np.ndarray) -> np.ndarray:
    c = np.clip(c, -1.0, 1.0)
    return q1 / (2 * np.pi) * (np.sqrt(1.0 - c**2) + c * (np.pi - np.arccos(c)))


def _erf_k11(q1: np.ndarray) -> np.ndarray:
    return 2.0 / np.pi * np.arcsin(2 * q1 / (1 + 2 * q1))


def _erf_k12(q1: np.ndarray, c: np.ndarray) -> np.ndarray:
    return 2.0 / np.pi * np.arcsin(2 * c * q1 / (1 + 2 * q1))


_CLOSED: dict[str, tuple[Callable, Callable]] = {
    "relu": (lambda q1: q1 / 2.0, _relu_k12),
    "erf": (_erf_k11, _erf_k12),
    "identity": (lambda q1: q1 * 1.0, lambda q1, c: c * q1),
}


@dataclass(frozen=True)
class Activation:
    """An MLP activation φ with its Gaussian kernel.

    ``closed_form`` says whether :meth:`kernel` uses an exact formula; ``force_quadrature=True``
    bypasses it (used by tests to check one path against the other).
    """

    name: str
    fn: Callable[[np.ndarray], np.ndarray]
    closed_form: bool

    def kernel(self, q1, c, *, force_quadrature: bool = False, _exact: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """``(E[φ(u₁)²], E[φ(u₁)φ(u₂)])`` for ``Var u = q₁`` and correlation ``c`` (arrays broadcast)."""
        q1 = np.asarray(q1, dtype=float)
        c = np.asarray(c, dtype=float)
        if np.any(~np.isfinite(q1)) or np.any(q1 < 0):
            raise ValueError("q1 (pre-activation variance) must be finite and ≥ 0")
        if np.any(~np.isfinite(c)) or np.any(np.abs(c) > 1 + 1e-9):
            raise ValueError("c (pre-activation correlation) must be in [-1, 1]")
        c = np.clip(c, -1.0, 1.0)
        if not force_quadrature and not _exact and q1.size == 1 and c.size >= FAST_MIN_SIZE:
            k11, k12 = self._dense_kernel(float(q1.flat[0]), c)
            shape = np.broadcast_shapes(q1.shape, c.shape)
            return np.full(shape, k11), k12.reshape(shape)
        if self.closed_form and not force_quadrature:
            f11, f12 = _CLOSED[self.name]
            shape = np.broadcast_shapes(q1.shape, c.shape)
            return np.broadcast_to(f11(q1), shape).astype(float), np.broadcast_to(f12(q1, c), shape).astype(float)
        return _quadrature_kernel(self, q1, c)


    def _dense_kernel(self, q1: float, c: np.ndarray) -> tuple[float, np.ndarray]:
        """Unchecked dense-table lookup of (K₁₁, K₁₂(c)) for one q₁; ``c`` must lie in [−1, 1]."""
        k11, vals, slopes = _dense_table(self, q1)
        x = c * _DENSE_H
        x += _DENSE_H
        i = x.astype(np.intp)  # ≤ DENSE_NODES − 1; the tables carry one padding entry
        x -= i
        out = slopes[i]
        out *= x
        out += vals[i]
        return k11, out


@dataclass(frozen=True)
class GatedActivation:
    """A gated unit ``h = φ(g) ⊙ u`` (``swiglu``: φ = SiLU, ``geglu``: φ = GELU) with its Gaussian kernel.

    The gate ``g = W_g x + b_g`` and the up projection ``u = W_u x + b_u`` have independent weights of the
    same variance, so for two tokens ``(g, g')`` and ``(u, u')`` are independent Gaussian pairs with the
    same variance q₁ and correlation c, and the kernel factorises exactly:
    ``E[h²] = K₁₁^φ(q₁) q₁`` and ``E[h h'] = K₁₂^φ(q₁, c) c q₁`` (K^φ: the gate's kernel, :class:`Activation`).
    """

    name: str
    gate: Activation

    @property
    def closed_form(self) -> bool:
        return self.gate.closed_form

    def kernel(self, q1, c, *, force_quadrature: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """``(E[h²], E[h h'])`` for pre-activation variance q₁ and correlation ``c`` (arrays broadcast)."""
        k11, k12 = self.gate.kernel(q1, c, force_quadrature=force_quadrature)  # checks q₁ and c
        q1 = np.asarray(q1, dtype=float)
        c = np.clip(np.asarray(c, dtype=float), -1.0, 1.0)
        return k11 * q1, k12 * (c * q1)

    def _dense_kernel(self, q1: float, c: np.ndarray) -> tuple[float, np.ndarray]:
        """Dense-table lookup (as :meth:`Activation._dense_kernel`) times the up projection's overlap."""
        k11, k12 = self.gate._dense_kernel(q1, c)
        k12 *= c
        k12 *= q1
        return k11 * q1, k12


AnyActivation = Activation | GatedActivation


def get(activation: str | Callable[[np.ndarray], np.ndarray] | AnyActivation) -> AnyActivation:
    """The kernel object for a name in :data:`NAMES` (a gated name gives a :class:`GatedActivation`), a
    vectorised callable, or an :class:`Activation` / :class:`GatedActivation` (returned as is)."""
    if isinstance(activation, (Activation, GatedActivation)):
        return activation
    if isinstance(activation, str):
        key = activation.lower()
        if key in GATED:
            return GatedActivation(key, _named(GATED[key]))
        if key not in _FUNCS:
            raise ValueError(f"activation must be one of {NAMES} or a callable; got {activation!r}")
        return _named(key)
    if callable(activation):
        try:
            probe = np.asarray(activation(np.linspace(-1.0, 1.0, 5)), dtype=float)
        except Exception as exc:  # noqa: BLE001 - any failure means the callable is unusable here
            raise ValueError(f"activation callable must accept a numpy array (vectorised); calling it failed: {exc}") from None
        if probe.shape != (5,):
            raise ValueError("activation callable must be vectorised: φ(array) must return an array of the same shape")
        return _callable_activation(activation)
    raise ValueError(f"activation must be one of {NAMES} or a callable; got {activation!r}")


_NAMED_CACHE: dict[str, Activation] = {}
_CALLABLE_CACHE: dict[int, Activation] = {}


def _named(key: str) -> Activation:
    if key not in _NAMED_CACHE:
        _NAMED_CACHE[key] = Activation(key, _FUNCS[key], key in _CLOSED)
    return _NAMED_CACHE[key]


def _callable_activation(fn: Callable) -> Activation:
    key = id(fn)
    act = _CALLABLE_CACHE.get(key)
    if act is None or act.fn is not fn:
        act = Activation(getattr(fn, "__name__", "callable"), fn, False)
        _CALLABLE_CACHE[key] = act
    return act


# --------------------------------------------------------------------------- quadrature path
# Polar coordinates (z₁, z₂) = r(cos θ, sin θ) turn u₁ = √q₁ r cos θ and u₂ = √q₁ r cos(θ − θ₀), with
# θ₀ = arccos c. An activation that is smooth except at 0 (ReLU, leaky ReLU, |x| …) then has kinks only
# at the four angles where cos θ = 0 or cos(θ − θ₀) = 0, and is smooth in r. Splitting the angle at those
# four points and using Gauss–Legendre on every arc and on r ∈ [0, R] gives spectral accuracy for such φ
# as well as for smooth φ.
RADIAL_NODES = 64
ARC_NODES = 24
R_MAX = 12.0
_GL_R = np.polynomial.legendre.leggauss(RADIAL_NODES)
_R = 0.5 * R_MAX * (_GL_R[0] + 1.0)
_WR = 0.5 * R_MAX * _GL_R[1] * _R * np.exp(-0.5 * _R**2)  # weight r e^{-r²/2} dr
_GL_A = np.polynomial.legendre.leggauss(ARC_NODES)
_GL_Z = np.polynomial.legendre.leggauss(2 * RADIAL_NODES)
_Z1 = 0.5 * R_MAX * (_GL_Z[0] + 1.0)
_W1 = 0.5 * R_MAX * _GL_Z[1] * np.exp(-0.5 * _Z1**2) / math.sqrt(2 * math.pi)  # half-line N(0,1) weights
_THETA = np.linspace(0.0, np.pi, THETA_NODES)
_TABLES: dict[tuple[int, float], tuple[float, CubicSpline]] = {}

#: Arrays of at least this many correlations (one q₁) use a dense cached table on a uniform grid in c
#: with linear interpolation by index arithmetic (error below 1e-6 of the kernel's scale K₁₁, see tests) instead of
#: evaluating the kernel per point: the arc-cosine alone costs more than a whole diagram layer.
FAST_MIN_SIZE = 4096
DENSE_NODES = 2**16 + 1
_DENSE_C = np.linspace(-1.0, 1.0, DENSE_NODES)
_DENSE_H = 0.5 * (DENSE_NODES - 1)
_DENSE: dict[tuple[int, float], tuple[float, np.ndarray, np.ndarray]] = {}


def _dense_table(act: Activation, q1: float) -> tuple[float, np.ndarray, np.ndarray]:
    key = (id(act.fn), q1)
    hit = _DENSE.get(key)
    if hit is None:
        k11, k12 = act.kernel(np.asarray(q1), _DENSE_C, _exact=True)
        k12 = np.asarray(k12, dtype=float)
        # value and slope per node; the last node (c = 1) gets slope 0 so c = 1 needs no index clamp
        hit = (float(np.asarray(k11).flat[0]), k12.copy(), np.append(np.diff(k12), 0.0))
        if len(_DENSE) > 1024:
            _DENSE.clear()
        _DENSE[key] = hit
    return hit


def quadrature_kernel(fn: Callable, q1: float, c: np.ndarray) -> tuple[float, np.ndarray]:
    """Direct quadrature of (K₁₁, K₁₂) for one q₁ and an array of correlations ``c`` (polar rule)."""
    c = np.atleast_1d(np.asarray(c, dtype=float))
    sq = math.sqrt(q1)
    k11 = float(np.dot(_W1, fn(sq * _Z1) ** 2 + fn(-sq * _Z1) ** 2))
    th0 = np.arccos(np.clip(c, -1.0, 1.0))
    cuts = np.sort(np.mod(np.stack([np.full_like(th0, np.pi / 2), np.full_like(th0, 3 * np.pi / 2),
                                    th0 + np.pi / 2, th0 + 3 * np.pi / 2], axis=-1), 2 * np.pi), axis=-1)
    ends = np.concatenate([cuts[:, 1:], cuts[:, :1] + 2 * np.pi], axis=-1)  # arcs between consecutive cuts
    half = 0.5 * (ends - cuts)  # (n_c, 4)
    ang = cuts[..., None] + half[..., None] * (_GL_A[0] + 1.0)  # (n_c, 4, m)
    wang = half[..., None] * _GL_A[1] / (2 * np.pi)  # (n_c, 4, m)
    u1 = sq * np.cos(ang)[..., None] * _R  # (n_c, 4, m, n_r)
    u2 = sq * np.cos(ang - th0[:, None, None])[..., None] * _R
    vals = (fn(u1) * fn(u2)) @ _WR  # (n_c, 4, m)
    k12 = np.sum(vals * wang, axis=(-1, -2))
    return k11, k12


def _table(act: Activation, q1: float) -> tuple[float, CubicSpline]:
    key = (id(act.fn), float(q1))
    hit = _TABLES.get(key)
    if hit is None:
        k11, k12 = quadrature_kernel(act.fn, float(q1), np.cos(_THETA))
        hit = (k11, CubicSpline(_THETA, k12))
        if len(_TABLES) > 4096:
            _TABLES.clear()
        _TABLES[key] = hit
    return hit


def _quadrature_kernel(act: Activation, q1: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    shape = np.broadcast_shapes(q1.shape, c.shape)
    qb = np.broadcast_to(q1, shape)
    theta = np.broadcast_to(np.arccos(c), shape)
    k11 = np.empty(shape)
    k12 = np.empty(shape)
    if q1.size == 1:
        a, spline = _table(act, float(q1.flat[0]))
        return np.full(shape, a), spline(theta)
    uniq, inv = np.unique(qb, return_inverse=True)
    inv = inv.reshape(shape)
    for i, qv in enumerate(uniq):
        sel = inv == i
        a, spline = _table(act, float(qv))
        k11[sel] = a
        k12[sel] = spline(theta[sel])
    return k11, k12


def mlp_map(activation, q, p, sigma_w2, sigma_b2, sigma_w2_out=None) -> tuple[np.ndarray, np.ndarray]:
    """Mean-field map of the MLP on tokens with overlaps (q, p) (docs/theory.md §3.3).

    Plain: ``W₂ φ(W₁x + b₁) + b₂``; gated (``swiglu``, ``geglu``): ``W₂ (φ(W_g x + b_g) ⊙ (W_u x + b_u)) + b₂``.
    Input weights ``W₁, W_g, W_u ~ N(0, σ_w²/d)``, output weights ``W₂ ~ N(0, σ_w,out²/d_ff)``
    (``sigma_w2_out=None``: σ_w,out² = σ_w²), biases ``N(0, σ_b²)``. With
    ``q₁ = σ_w² q + σ_b²`` and ``p₁ = σ_w² p + σ_b²`` (c = p₁/q₁):

    * plain: ``q₂ = σ_b² + σ_w,out² E[φ(u₁)²]``, ``p₂ = σ_b² + σ_w,out² E[φ(u₁)φ(u₂)]``;
    * gated: ``q₂ = σ_b² + σ_w,out² K₁₁^φ(q₁) q₁``, ``p₂ = σ_b² + σ_w,out² K₁₂^φ(q₁, c) p₁`` (exact: gate and
      up projections are independent, :class:`GatedActivation`).
    """
    act = get(activation)
    w_out = sigma_w2 if sigma_w2_out is None else sigma_w2_out
    q1 = sigma_w2 * np.asarray(q, dtype=float) + sigma_b2
    p1 = sigma_w2 * np.asarray(p, dtype=float) + sigma_b2
    if q1.ndim == 0 and p1.size >= FAST_MIN_SIZE and q1 > 0:  # one q₁ for the whole grid (after a LayerNorm)
        c = p1 * (1.0 / float(q1))
        np.clip(c, -1.0, 1.0, out=c)
        d11, d12 = act._dense_kernel(float(q1), c)
        d12 *= w_out
        d12 += sigma_b2
        return sigma_b2 + w_out * d11, d12
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.where(q1 > 0, p1 / np.where(q1 > 0, q1, 1.0), 1.0)
    k11, k12 = act.kernel(q1, np.clip(c, -1.0, 1.0))
    return sigma_b2 + w_out * k11, sigma_b2 + w_out * k12
