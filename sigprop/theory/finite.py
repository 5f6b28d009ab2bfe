"""Exact finite-T expectations of one REM attention row (docs/theory.md §2, a sigprop extension).

Setting: one softmax-attention row with ``n`` keys (``n = T`` for an encoder row), logits
``a_1..a_n`` i.i.d. ``N(0, s²)`` with ``s = b·sqrt(ln T)`` (``b`` is the effective inverse temperature
β, the critical point of the T = ∞ REM is ``b = √2``), Gibbs weights ``A_s = e^{a_s}/Z`` with
partition function ``Z = Σ_s e^{a_s}``. This module computes, exactly at finite ``n``,

* the participation ratios ``Y^(k) = E Σ_s A_s^k`` for k = 2, 3, 4 (``y2``, ``y3``, ``y4``);
* ``pair22 = E Σ_{s≠s'} A_s² A_{s'}²`` so that ``E[(Σ A²)²] = Y^(4) + pair22``;
* the mean Shannon entropy ``E[−Σ A ln A]`` and the free entropy ``E ln Z`` (nats, not divided by ln T);
* the cross-row overlap ``E Σ_s A_ts A_τs`` of two rows whose logits have correlation ρ per key.

Method. ``Z^{-k} = Γ(k)^{-1} ∫ t^{k-1} e^{-tZ} dt`` with ``t = e^{-u}`` turns every expectation into a
one-dimensional integral over ``u`` (two-dimensional for the overlap) of products of single-key
Gaussian transforms

    ψ_k(u) = E[exp(k(a−u) − e^{a−u})],   g(u) = 1 − φ(u) = E[1 − exp(−e^{a−u})],
    χ(u) = E[(a−u) exp((a−u) − e^{a−u})],

e.g. ``Y^(k) = n/Γ(k) ∫ ψ_k φ^{n−1} du``, ``E ln Z = n ∫ u ψ_1 φ^{n−1} du − γ`` and
``entropy = −γ − n ∫ χ φ^{n−1} du`` (the last two follow from ``φ^n`` being the law of ``ln Z`` plus a
standard Gumbel variable; no cancellation between large numbers). The Gaussian transforms are computed

* for logit std ``σ ≤ 0.6`` by 64-point Gauss–Hermite quadrature in ``a/σ``;
* for ``σ > 0.6`` by a trapezoid rule in ``x = a − u`` (step ≤ 0.3, spectrally accurate since the
  integrands are analytic in a strip of half-width π/2) on a window adapted to each ``u``; the
  non-decaying part of ``1 − exp(−e^x)`` is split off as the smooth step ``Φ(x)``, whose Gaussian
  transform is exact.

``φ^{n−1}`` is evaluated as ``exp((n−1)·log1p(−g))`` so that n up to 1e12 is safe. The outer
``u``-integral is a trapezoid rule on a window located from closed-form bounds of ``g`` and ``φ``.

Speed. :func:`moments` / :func:`overlap` evaluate tables built once per distinct ``n`` (cached):
moments over ``x = b/(1+b) ∈ [0, 1]`` (``x = 1`` is the exact ``b → ∞`` limit), the overlap over
``(x, r = sqrt(1−ρ))``. The tables are cubic splines through direct-quadrature nodes, resampled onto
fine uniform grids and read by (bi)linear interpolation. :func:`moments_direct` and
:func:`overlap_direct` skip the tables.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import glob
import math
import os
import sys
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import interpolate, special

__all__ = [
    "FiniteMoments",
    "moments",
    "moments_s",
    "moments_direct",
    "overlap",
    "overlap_s",
    "overlap_direct",
    "one_blas_thread",
    "moments_b",
    "y2_b",
    "overlap_b",
    "expected_max_normal",
    "clear_cache",
]

EULER_GAMMA = 0.5772156649015329
_GH_SIGMA_MAX = 0.6  # below: Gauss–Hermite in a/σ; above: trapezoid in x = a − u
_GH_T, _GH_W = np.polynomial.hermite.hermgauss(64)
_GH_Z = np.sqrt(2.0) * _GH_T
_GH_W = _GH_W / np.sqrt(np.pi)
_X_STEP = 0.3  # trapezoid step in x = a − u
_X_HI = 9.0  # upper end of the x window (exp(−e^9) ≈ e^{−8103}; Φc(9) ≈ 1e−19)
_U_STEP = 0.3  # minimum outer step in u
_LOG_TINY = -42.0  # log of the relative level below which integrands are dropped
_SQ2PI = math.sqrt(2.0 * math.pi)
_OV_STEP = 0.5  # minimum u and m step of the overlap quadrature
_OV_LOG_TINY = -32.0
_OV_MAX_NU = 900

_FIELDS = ("y2", "y3", "y4", "pair22", "entropy", "log_z")


@dataclass(frozen=True)
class FiniteMoments:
    """Exact finite-T REM expectations of one attention row (arrays, broadcast shape of the inputs).

    y2, y3, y4 : participation ratios ``Y^(k) = E Σ_s A_s^k``.
    pair22 : ``E Σ_{s≠s'} A_s² A_{s'}²``; ``E[(Σ_s A_s²)²] = y4 + pair22``.
    entropy : ``E[−Σ_s A_s ln A_s]`` in nats (T = ∞ theory: ≈ S·ln T).
    log_z : ``E ln Z`` in nats (T = ∞ theory: ≈ Φ·ln T).
    """

    y2: np.ndarray
    y3: np.ndarray
    y4: np.ndarray
    pair22: np.ndarray
    entropy: np.ndarray
    log_z: np.ndarray

    @property
    def y2_squared_mean(self) -> np.ndarray:
        """``E[(Σ_s A_s²)²] = Y^(4) + pair22``."""
        return self.y4 + self.pair22


# --------------------------------------------------------------------------------------------------
# BLAS threads: the quadratures do many small matrix products, for which a multi-threaded OpenBLAS
# is slower (badly so on a loaded machine). Table builds run with one BLAS thread, then restore.
# --------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _openblas_handles():
    try:
        libdir = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs")
        for path in sorted(glob.glob(os.path.join(libdir, "*openblas*"))):
            lib = ctypes.CDLL(path)
            for prefix in ("scipy_openblas_", "openblas_"):
                for suffix in ("64_", ""):
                    get = getattr(lib, f"{prefix}get_num_threads{suffix}", None)
                    put = getattr(lib, f"{prefix}set_num_threads{suffix}", None)
                    if get is not None and put is not None:
                        return get, put
    except OSError:
        pass
    return None


_blas_guard = threading.Lock()
_blas_users = 0
_blas_old = 1


@contextlib.contextmanager
def one_blas_thread():
    """Context manager: OpenBLAS runs single-threaded inside (faster for many small products).

    Safe to nest and to enter from several threads at once: the first to enter saves the thread count,
    the last to leave restores it."""
    global _blas_users, _blas_old
    h = _openblas_handles()
    if h is None:
        yield
        return
    get, put = h
    with _blas_guard:
        if _blas_users == 0:
            _blas_old = int(get())
            put(ctypes.c_int(1))
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_guard:
            _blas_users -= 1
            if _blas_users == 0:
                put(ctypes.c_int(_blas_old))


# --------------------------------------------------------------------------------------------------
# input validation
# --------------------------------------------------------------------------------------------------


def _as_float(name: str, x) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric") from exc
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite")
    return arr


def _check_b(name: str, b) -> np.ndarray:
    b = _as_float(name, b)
    if np.any(b < 0):
        raise ValueError(f"{name} must be in [0, inf) (finite, ≥ 0)")
    return b


def _check_n(name: str, n) -> np.ndarray:
    n = _as_float(name, n)
    if np.any(n < 2):
        raise ValueError(f"{name} (number of keys) must be in [2, inf) (finite, ≥ 2)")
    return n


def _check_rho(rho) -> np.ndarray:
    rho = _as_float("rho", rho)
    if np.any(rho < 0) or np.any(rho > 1):
        raise ValueError("rho must be in [0, 1]")
    return rho


# --------------------------------------------------------------------------------------------------
# single-key Gaussian transforms
# --------------------------------------------------------------------------------------------------


def _kernel(sig: float, v: np.ndarray, want_psi: int = 4, want_chi: bool = True) -> dict:
    """Gaussian transforms at shifts ``v`` (1-D array) for a ~ N(0, sig²), x = a − v.

    Returns g = E[1 − e^{−e^x}], phi = E[e^{−e^x}], psi[k] = E[e^{kx − e^x}] (k = 1..want_psi)
    and chi = E[x e^{x − e^x}].
    """
    v = np.asarray(v, dtype=float)
    out: dict = {}
    if sig <= _GH_SIGMA_MAX:
        x = sig * _GH_Z[None, :] - v[:, None]
        ex = np.exp(x)
        e0 = np.exp(-ex)
        out["g"] = (-np.expm1(-ex)) @ _GH_W
        out["phi"] = e0 @ _GH_W
        f1 = ex * e0
        cols = [f1]
        fk = f1
        for _ in range(2, want_psi + 1):
            fk = fk * ex
            cols.append(fk)
        psi = {k + 1: c @ _GH_W for k, c in enumerate(cols)}
        if want_chi:
            out["chi"] = (x * f1) @ _GH_W
    else:
        # common trapezoid grid in x = a − v; its left end covers, for every v, the region where
        # e^{x} N(v + x; σ²) (peak at x* = σ² − v) is above e^{−40} of its maximum
        xs = sig * sig - float(np.min(v))
        if xs < 0:
            left = xs - 10.0 * sig - 40.0
        else:
            left = -min(40.0 * sig * sig / max(xs, 1e-300), 9.0 * sig) - 1.0
        left = min(left, -40.0)
        nx = int(np.ceil((_X_HI - left) / _X_STEP)) + 1
        x = np.linspace(left, _X_HI, nx)
        h = x[1] - x[0]
        ex = np.exp(x)
        e0 = np.exp(-ex)
        f1 = ex * e0
        cols = [-np.expm1(-ex) - special.ndtr(x), f1]  # smooth-step remainder of 1 − e^{−e^x}
        fk = f1
        for _ in range(2, want_psi + 1):
            fk = fk * ex
            cols.append(fk)
        if want_chi:
            cols.append(x * f1)
        a = (v[:, None] + x[None, :]) * (1.0 / sig)
        w = np.exp(-0.5 * a * a)
        res = (w @ np.stack(cols, axis=1)) * (h / (sig * _SQ2PI))
        er = res[:, 0]
        scale = math.sqrt(sig * sig + 1.0)
        out["g"] = special.ndtr(-v / scale) + er
        out["phi"] = special.ndtr(v / scale) - er
        psi = {k: res[:, k] for k in range(1, want_psi + 1)}
        if want_chi:
            out["chi"] = res[:, want_psi + 1]
    out["g"] = np.clip(out["g"], 0.0, 1.0)
    out["phi"] = np.clip(out["phi"], 0.0, 1.0)
    out["psi"] = psi
    return out


def _log_phi(g: np.ndarray, phi: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.where(g < 0.5, np.log1p(-np.minimum(g, 0.5)), np.log(np.maximum(phi, 1e-300)))


# --------------------------------------------------------------------------------------------------
# outer u window and grid
# --------------------------------------------------------------------------------------------------


def _u_window(s: float, n: float, log_tiny: float = _LOG_TINY) -> tuple[float, float]:
    """Interval of u outside which all u-integrands are below e^{−50} of their scale (bounds only)."""
    ln_n = math.log(n)
    lo_c = -12.0 * s - 12.0
    hi_c = ln_n + min(0.5 * s * s, 12.0 * s) + 70.0
    u = np.linspace(lo_c, hi_c, 801)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        # g ≤ g_ub := E min(1, e^{a−u}) = Φc(u/s) + e^{s²/2 − u} Φ((u − s²)/s)
        log_g1 = special.log_ndtr(-u / s)
        log_g2 = 0.5 * s * s - u + special.log_ndtr((u - s * s) / s)
        log_gub = np.minimum(np.logaddexp(log_g1, log_g2), 0.0)
        # φ ≤ 1 − (1 − 1/e) g_ub and φ ≤ Φ((u + 4)/s) + e^{−e^4}
        lphi1 = np.log1p(-(1.0 - math.exp(-1.0)) * np.exp(log_gub))
        lphi2 = np.log(special.ndtr((u + 4.0) / s) + 2e-24)
        lphi = np.minimum(lphi1, lphi2)
    logb = math.log(n) + log_gub + (n - 1.0) * lphi + np.log(np.maximum(1.0, np.abs(u)))
    keep = np.nonzero(logb > log_tiny)[0]
    du_c = u[1] - u[0]
    if keep.size == 0:  # should not happen; fall back to the whole candidate range
        return float(lo_c), float(hi_c)
    return float(u[keep[0]] - du_c), float(u[keep[-1]] + du_c)


def _u_step(s: float, n: float) -> float:
    return max(_U_STEP, s / (4.0 * (math.sqrt(2.0 * math.log(n)) + 1.0)))


def _u_grid(s: float, n: float, step: float | None = None, max_pts: int = 100000) -> np.ndarray:
    lo, hi = _u_window(s, n)
    du = _u_step(s, n) if step is None else step
    m = int(np.ceil((hi - lo) / du)) + 1
    m = min(max(m, 16), max_pts)
    return np.linspace(lo, hi, m)


# --------------------------------------------------------------------------------------------------
# direct quadrature, one point
# --------------------------------------------------------------------------------------------------


def _row_direct(s: float, n: float) -> tuple[float, ...]:
    """(y2, y3, y4, pair22, entropy, log_z, y1) at logit std s and n keys (y1 = 1 is a check)."""
    if s == 0.0:
        return (1.0 / n, n**-2.0, n**-3.0, (n - 1.0) / n**3, math.log(n), math.log(n), 1.0)
    u = _u_grid(s, n)
    du = u[1] - u[0]
    k = _kernel(s, u)
    lphi = _log_phi(k["g"], k["phi"])
    w = np.exp((n - 1.0) * lphi) * (n * du)
    w2 = np.exp((n - 2.0) * lphi) * (n * (n - 1.0) * du)
    psi = k["psi"]
    y1 = float(psi[1] @ w)
    y2 = float(psi[2] @ w)
    y3 = float(psi[3] @ w) / 2.0
    y4 = float(psi[4] @ w) / 6.0
    pair22 = float((psi[2] * psi[2]) @ w2) / 6.0
    log_z = float((u * psi[1]) @ w) - EULER_GAMMA
    ent = -EULER_GAMMA - float(k["chi"] @ w)
    ln_n = math.log(n)
    # clip tiny quadrature excursions to the exact ranges
    y2 = min(max(y2, 1.0 / n), 1.0)
    y3 = min(max(y3, 0.0), y2)
    y4 = min(max(y4, 0.0), y3)
    pair22 = max(pair22, 0.0)
    ent = min(max(ent, 0.0), ln_n)
    return (y2, y3, y4, pair22, ent, log_z, y1)


# long: one two-dimensional quadrature whose grid set-up and evaluation share many local quantities
def _overlap_point(s: float, rho: float, n: float, y2: float | None = None, cache: dict | None = None) -> float:
    """E Σ_s A_ts A_τs for two rows with per-key logit correlation ρ, std s, n keys."""
    if s == 0.0 or rho == 0.0:
        return 1.0 / n
    if s < 1e-3:  # small-s expansion, error O(s⁴)
        return 1.0 / n + rho * s * s * (n - 1.0) / (n * n)
    if rho == 1.0:
        return _row_direct(s, n)[0] if y2 is None else y2
    sig = s * math.sqrt(1.0 - rho)
    tau = s * math.sqrt(rho)
    if cache is None:
        cache = {}
    if "win" not in cache:
        cache["win"] = _u_window(s, n, log_tiny=_OV_LOG_TINY)
    lo, hi = cache["win"]
    dm_req = max(_OV_STEP, sig / 1.2)  # resolution of the single-key transforms at std σ
    du = min(max(_OV_STEP, _u_step(s, n)), dm_req)
    nu = int(np.ceil((hi - lo) / du)) + 1
    nu = min(max(nu, 16), _OV_MAX_NU)
    if nu not in cache:
        u = np.linspace(lo, hi, nu)
        cache[nu] = (u, _kernel(s, u, want_psi=1, want_chi=False))  # marginals g_s, φ_s
    u, ks = cache[nu]
    du = u[1] - u[0]
    # where the σ-transforms are non-negligible: v ∈ [v_lo, v_hi]
    v_lo = -10.0 * sig - 8.0
    v_hi = min(0.5 * sig * sig, 10.5 * sig) + 60.0
    m_lo = max(lo - v_hi, -9.5 * tau)
    m_hi = min(hi - v_lo, 9.5 * tau)
    dm = min(dm_req, 0.4 * tau)
    kk = max(1, int(round(du / dm)))
    dm = du / kk
    n_v = (v_hi - v_lo) / dm
    if m_hi <= m_lo:  # shared component irrelevant (cannot happen for tau > 0 in practice)
        m = np.zeros(1)
        wm = np.ones(1)
        aligned = False
    elif n_v <= 4000:
        aligned = True
        j0 = math.floor(m_lo / dm)
        j1 = math.ceil(m_hi / dm)
        m = dm * np.arange(j0, j1 + 1)
        hh = m / tau
        wm = np.exp(-0.5 * hh * hh) * (dm / tau / _SQ2PI)
    else:
        aligned = False
        ngh = int(min(48, 8 + math.ceil(6.0 * tau / dm_req)))
        t, wt = np.polynomial.hermite.hermgauss(ngh)
        m = tau * math.sqrt(2.0) * t
        wm = wt / math.sqrt(math.pi)
    if aligned:
        # v = u_i − m_j lies on a grid of step dm: evaluate the σ-transforms once per distinct v
        off = u[0] - m[-1]
        idx = np.rint((u[None, :] - m[:, None] - off) / dm).astype(np.int64)
        nvals = int(idx.max()) + 1
        vv = off + dm * np.arange(nvals)
        sel = (vv >= v_lo) & (vv <= v_hi)
        psi_t = np.zeros(nvals)
        g_t = np.where(vv < v_lo, 1.0, 0.0)
        phi_t = 1.0 - g_t
        if np.any(sel):
            kv = _kernel(sig, vv[sel], want_psi=1, want_chi=False)
            psi_t[sel] = kv["psi"][1]
            g_t[sel] = kv["g"]
            phi_t[sel] = kv["phi"]
        P = psi_t[idx]
        G = g_t[idx]
        F = phi_t[idx]
    else:
        vv = (u[None, :] - m[:, None]).ravel()
        kv = _kernel(sig, vv, want_psi=1, want_chi=False)
        shape = (m.size, u.size)
        P = kv["psi"][1].reshape(shape)
        G = kv["g"].reshape(shape)
        F = kv["phi"].reshape(shape)
    Pw = P * wm[:, None]
    Psi = Pw.T @ P  # E_h ψ(u1 − m) ψ(u2 − m)
    Egf = (G * wm[:, None]).T @ F  # E_h g(u1 − m) φ(u2 − m)
    one_minus = np.clip(ks["g"][None, :] + Egf, 0.0, 1.0)  # 1 − Φ2 = g_s(u2) + E[g1 φ2]
    phi2 = ks["phi"][None, :] - Egf
    with np.errstate(divide="ignore"):
        lphi2 = np.where(
            one_minus < 0.5, np.log1p(-np.minimum(one_minus, 0.5)), np.log(np.maximum(phi2, 1e-300))
        )
    val = float(np.sum(Psi * np.exp((n - 1.0) * lphi2))) * n * du * du
    # 1/n ≤ O ≤ Y² (Cauchy–Schwarz on two rows with the same marginals); near ρ = 1 the quadrature can
    # overshoot Y² by ~1e-5, so the bound is applied there (Y² from the caller or one direct row)
    cap = y2 if y2 is not None else (_row_direct(s, n)[0] if rho > 0.99 else 1.0)
    return min(max(val, 1.0 / n), cap)


# --------------------------------------------------------------------------------------------------
# public direct API
# --------------------------------------------------------------------------------------------------


def _broadcast(*arrs):
    shape = np.broadcast_shapes(*(np.shape(a) for a in arrs))
    return shape, [np.broadcast_to(a, shape).ravel() for a in arrs]


def moments_direct(s, n) -> FiniteMoments:
    """Direct quadrature (no table) at explicit logit std ``s`` and ``n`` keys; broadcasting.

    About 0.5–2 ms per point. Use :func:`moments_s` / :func:`moments` for many points.
    """
    s = _check_b("s", s)
    n = _check_n("n", n)
    shape, (sf, nf) = _broadcast(s, n)
    res = np.empty((sf.size, 6))
    with one_blas_thread():
        for i in range(sf.size):
            res[i] = _row_direct(float(sf[i]), float(nf[i]))[:6]
    return FiniteMoments(*(res[:, j].reshape(shape) for j in range(6)))


def overlap_direct(s, rho, n) -> np.ndarray:
    """Direct quadrature of the cross-row overlap ``E Σ_s A_ts A_τs`` (std ``s``, correlation ρ, n keys)."""
    s = _check_b("s", s)
    rho = _check_rho(rho)
    n = _check_n("n", n)
    shape, (sf, rf, nf) = _broadcast(s, rho, n)
    out = np.empty(sf.size)
    with one_blas_thread():
        for i in range(sf.size):
            out[i] = _overlap_point(float(sf[i]), float(rf[i]), float(nf[i]))
    return out.reshape(shape)


def expected_max_normal(n: float) -> float:
    """``c_n = E max`` of n i.i.d. standard normals (real n ≥ 1), by quadrature of n φ(z) Φ(z)^{n−1} z."""
    return _cmax(float(n))


@functools.lru_cache(maxsize=256)
def _cmax(n: float) -> float:
    z = np.linspace(-14.0, 14.0, 28001)
    dens = n * np.exp(-0.5 * z * z - 0.5 * math.log(2 * math.pi) + (n - 1.0) * special.log_ndtr(z))
    return float(np.sum(z * dens) * (z[1] - z[0]))


# --------------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------------

_MOM_NODES = 193  # spline nodes in x = b/(1+b) ∈ [0, 1]
_MOM_FINE = 8193  # fine resampling for linear reads
_OV_NODES_X = 41
_OV_NODES_R = 21
_OV_POW = 3.0  # ρ axis: w = (1 − ρ)^(1/_OV_POW)
_OV_FINE_X = 1025
_OV_FINE_R = 513
_DIRECT_BELOW = 48  # fewer points than this for one n (and no table yet): direct quadrature
_OV_DIRECT_BELOW = 16


# --------------------------------------------------------------------------- table node cache
#: Bump when the quadrature or the node layout changes: shipped and on-disk tables are keyed by it.
TABLE_VERSION = 1
#: Sequence lengths whose node tables ship with the package (``sigprop/data/finite_tables.npz``).
SHIPPED_N = (64, 128, 256, 512, 1024, 2048, 4096, 8192)
#: Sequence lengths whose causal (decoder) representative rows also ship tables, so ``--causal`` diagrams at
#: these T need no first-use computation.
SHIPPED_CAUSAL_T = (64, 128, 256, 512, 1024, 2048, 4096, 8192)


def _shipped_ns() -> list[float]:
    """Key counts n with shipped tables: :data:`SHIPPED_N` and the causal rows of :data:`SHIPPED_CAUSAL_T`."""
    from sigprop.theory import rows  # rows imports this module lazily; only the developer tool needs it

    ns = {float(n) for n in SHIPPED_N}
    for T in SHIPPED_CAUSAL_T:
        ns |= {float(n) for n in rows.causal_rows(T)[0] if n >= 2}
    return sorted(ns)


_SHIPPED_PATH = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "finite_tables.npz")
_shipped: dict | None = None


def _table_key(kind: str, n: float, shape: tuple[int, ...]) -> str:
    return f"v{TABLE_VERSION}-{kind}-{'x'.join(map(str, shape))}-pow{_OV_POW}-n{float(n)!r}"


def _cache_dir() -> str:
    return os.path.join(os.environ.get("SIGPROP_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "sigprop"), "finite")


def _cached_nodes(kind: str, n: float, shape: tuple[int, ...], compute) -> np.ndarray:
    """Node values of a table: from the tables shipped with the package, the user cache, or computed.

    A computed table is written to ``$SIGPROP_CACHE/finite`` (default ``~/.cache/sigprop/finite``)
    atomically; set ``SIGPROP_NO_TABLE_CACHE=1`` to always compute.
    """
    global _shipped
    key = _table_key(kind, n, shape)
    if os.environ.get("SIGPROP_NO_TABLE_CACHE"):
        return compute()
    if _shipped is None:
        try:
            with np.load(_SHIPPED_PATH) as z:
                _shipped = {k: z[k] for k in z.files}
        except (OSError, ValueError):
            _shipped = {}
    hit = _shipped.get(key)
    if hit is not None and hit.shape == shape:
        return hit
    path = os.path.join(_cache_dir(), key + ".npy")
    try:
        arr = np.load(path)
        if arr.shape == shape and np.all(np.isfinite(arr)):
            return arr
    except (OSError, ValueError):
        pass
    if kind == "overlap" and not os.environ.get("SIGPROP_QUIET"):  # ~1–4 s each: say so, never run silently
        print(f"sigprop: computing the exact finite-T table for n = {n:g} keys (once; cached in {_cache_dir()})",
              file=sys.stderr, flush=True)
    arr = compute()
    try:
        from sigprop.io import atomic_path

        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.save(fh, arr)
    except OSError:  # read-only home, full disk: the cache is an optimisation only
        pass
    return arr


def build_shipped_tables(path: str = _SHIPPED_PATH) -> str:
    """Compute the node tables for :data:`SHIPPED_N` and write them to ``path`` (developer tool)."""
    out: dict[str, Any] = {}
    old = os.environ.get("SIGPROP_NO_TABLE_CACHE")
    os.environ["SIGPROP_NO_TABLE_CACHE"] = "1"
    try:
        for n in _shipped_ns():
            clear_cache()
            mt = _moment_table(float(n))
            ot = _overlap_table(float(n))
            out[_table_key("moments", float(n), mt.nodes.shape)] = mt.nodes
            out[_table_key("overlap", float(n), ot.nodes.shape)] = ot.nodes
    finally:
        if old is None:
            os.environ.pop("SIGPROP_NO_TABLE_CACHE", None)
        else:
            os.environ["SIGPROP_NO_TABLE_CACHE"] = old
        clear_cache()
    from sigprop.io import atomic_path

    with atomic_path(path) as tmp:  # temp name ends in .npz, so numpy adds no suffix
        np.savez_compressed(tmp, **out)
    return path


def _x_of_b(b: np.ndarray) -> np.ndarray:
    return b / (1.0 + b)


class _MomentTable:
    """Moments at fixed n over x = b/(1+b) ∈ [0,1]; log_z stored as D = E ln Z − s c_n ∈ [0, ln n]."""

    def __init__(self, n: float):
        self.n = n
        self.ln_n = math.log(n)
        self.sq = math.sqrt(self.ln_n)
        self.cn = _cmax(n)
        x = np.linspace(0.0, 1.0, _MOM_NODES)

        def compute() -> np.ndarray:
            vals = np.empty((x.size, 6))
            for i, xi in enumerate(x[:-1]):
                b = xi / (1.0 - xi)
                s = b * self.sq
                r = _row_direct(s, n)
                vals[i] = (r[0], r[1], r[2], r[3], r[4], r[5] - s * self.cn)
            vals[-1] = (1.0, 1.0, 1.0, 0.0, 0.0, 0.0)  # b → ∞: A concentrates on the arg max
            return vals

        vals = _cached_nodes("moments", n, (x.size, 6), compute)
        self.nodes_x = x
        self.nodes = vals
        spl = interpolate.CubicSpline(x, vals, axis=0)
        xf = np.linspace(0.0, 1.0, _MOM_FINE)
        self.fine = np.ascontiguousarray(spl(xf))
        self.fine_y2 = np.ascontiguousarray(self.fine[:, 0])
        self.spline = spl

    def y2(self, b: np.ndarray) -> np.ndarray:
        x = _x_of_b(b) * (_MOM_FINE - 1)
        i = np.minimum(x.astype(np.int64), _MOM_FINE - 2)
        f = x - i
        col = self.fine_y2
        return col[i] * (1.0 - f) + col[i + 1] * f

    def __call__(self, b: np.ndarray) -> np.ndarray:
        x = _x_of_b(b) * (_MOM_FINE - 1)
        i = np.minimum(x.astype(np.int64), _MOM_FINE - 2)
        f = (x - i)[:, None]
        out = self.fine[i] * (1.0 - f) + self.fine[i + 1] * f
        out[:, 5] += b * self.sq * self.cn
        return out


class _OverlapTable:
    """Overlap at fixed n on (x = b/(1+b), w = (1 − ρ)^{1/4}) ∈ [0,1]² (w resolves the ρ → 1 edge).

    Stored as the ratio ``R = (overlap − 1/n)/(Y^(2) − 1/n)`` (1 at ρ = 1, → ρ as b → 0), which is
    much flatter in b than the overlap itself; ``Y^(2)(b)`` comes from the moment table.
    """

    B_INF = 1e7  # b used for the x = 1 column
    Y2_FLOOR = 1e-9  # below this excess Y^(2) − 1/n the small-b limit R = ρ is used

    def __init__(self, n: float):
        self.n = n
        self.sq = math.sqrt(math.log(n))
        self.mt = _moment_table(n)
        x = np.linspace(0.0, 1.0, _OV_NODES_X)
        w = np.linspace(0.0, 1.0, _OV_NODES_R)
        rho = 1.0 - w**_OV_POW

        def compute() -> np.ndarray:
            vals = np.empty((x.size, w.size))
            vals[:] = rho[None, :]
            for i, xi in enumerate(x):
                if xi == 0.0:
                    continue
                b = xi / (1.0 - xi) if xi < 1.0 else self.B_INF
                s = b * self.sq
                y2 = _row_direct(s, n)[0]
                ex = y2 - 1.0 / n
                if ex < self.Y2_FLOOR:
                    continue
                cache: dict = {}
                for j in range(1, w.size - 1):
                    o = _overlap_point(s, float(rho[j]), n, y2=y2, cache=cache)
                    vals[i, j] = (o - 1.0 / n) / ex
            return vals

        vals = _cached_nodes("overlap", n, (x.size, w.size), compute)
        self.nodes = vals
        spl = interpolate.RectBivariateSpline(x, w, vals, kx=3, ky=3, s=0)
        xf = np.linspace(0.0, 1.0, _OV_FINE_X)
        wf = np.linspace(0.0, 1.0, _OV_FINE_R)
        self.fine = np.ascontiguousarray(spl(xf, wf))
        self.fine_flat = self.fine.ravel()
        self.spline = spl

    def __call__(self, b: np.ndarray, rho: np.ndarray, y2: np.ndarray | None = None) -> np.ndarray:
        x = np.array(_x_of_b(b), dtype=float, ndmin=1)
        x *= _OV_FINE_X - 1
        r = np.cbrt(np.maximum(1.0 - np.array(rho, dtype=float, ndmin=1), 0.0))  # w = (1 − ρ)^{1/3}
        r *= _OV_FINE_R - 1
        i = x.astype(np.int64)
        np.minimum(i, _OV_FINE_X - 2, out=i)
        j = r.astype(np.int64)
        np.minimum(j, _OV_FINE_R - 2, out=j)
        x -= i  # fractional parts
        r -= j
        k = i * _OV_FINE_R
        k += j
        ratio = _bilinear(self.fine_flat, k, x, r)
        inv_n = 1.0 / self.n
        if y2 is None:
            y2 = self.mt.y2(b)
        ratio *= y2 - inv_n
        ratio += inv_n
        return ratio.reshape(np.shape(b)) if np.ndim(b) == 0 else ratio


def _bilinear(t: np.ndarray, k: np.ndarray, x: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Bilinear read of a flat overlap table (rows of :data:`_OV_FINE_R` entries) at flat indices ``k`` of
    the lower corners and fractional parts ``x`` (row axis), ``r`` (column axis), clipped to [0, 1]:
    ``t00 + x (t10 − t00) + r ((t01 − t00) + x (t11 − t10 − t01 + t00))``, in place (``k`` is consumed)."""
    t00 = t[k]
    t01 = t[k + 1]
    k += _OV_FINE_R
    t10 = t[k]
    t11 = t[k + 1]
    t11 -= t10
    t11 -= t01
    t11 += t00
    t11 *= x
    t01 -= t00
    t11 += t01
    t11 *= r
    t10 -= t00
    t10 *= x
    t11 += t10
    t11 += t00
    return np.clip(t11, 0.0, 1.0, out=t11)


_MOM_TABLES: dict[float, _MomentTable] = {}
_OV_TABLES: dict[float, _OverlapTable] = {}


_BUILD_LOCKS: dict[tuple[int, float], threading.Lock] = {}
_BUILD_LOCKS_GUARD = threading.Lock()


def _cached_table(tables: dict, n: float, build):
    """The table for ``n`` keys from ``tables``, built once (single-threaded BLAS) on first use.

    Thread-safe: the chunk threads of a causal propagation ask for the same tables at once; one builds
    each table while the others wait for it (tables of different n still build side by side)."""
    t = tables.get(n)
    if t is None:
        with _BUILD_LOCKS_GUARD:
            lock = _BUILD_LOCKS.setdefault((id(tables), n), threading.Lock())
        with lock:
            t = tables.get(n)
            if t is None:
                with one_blas_thread():
                    t = tables[n] = build(n)
    return t


def _moment_table(n: float) -> _MomentTable:
    return _cached_table(_MOM_TABLES, n, _MomentTable)


def _overlap_table(n: float) -> _OverlapTable:
    return _cached_table(_OV_TABLES, n, _OverlapTable)


def clear_cache() -> None:
    """Drop all cached tables."""
    _MOM_TABLES.clear()
    _OV_TABLES.clear()
    _stacked_tables.cache_clear()


class StackedTables:
    """The Y^(2) and overlap tables of several key counts side by side (a causal layer's position bins).

    :meth:`y2` and :meth:`overlap` read a ``(..., K)`` array whose column k has ``ns[k]`` keys in one
    vectorised pass, with the same arithmetic (and values) as the per-n tables.
    """

    def __init__(self, ns: tuple[float, ...]):
        self.ns = np.array(ns, dtype=float)
        self.inv_n = 1.0 / self.ns
        self.y2_flat = np.concatenate([_moment_table(float(n)).fine_y2 for n in ns])
        self.y2_off = np.arange(len(ns), dtype=np.int64) * _MOM_FINE
        self.ov_flat = np.concatenate([_overlap_table(float(n)).fine_flat for n in ns])
        self.ov_off = np.arange(len(ns), dtype=np.int64) * (_OV_FINE_X * _OV_FINE_R)

    def y2(self, b: np.ndarray) -> np.ndarray:
        """Y^(2) at effective β ``b`` ``(..., K)`` (:meth:`_MomentTable.y2` per column)."""
        x = _x_of_b(b) * (_MOM_FINE - 1)
        i = np.minimum(x.astype(np.int64), _MOM_FINE - 2)
        f = x - i
        i += self.y2_off
        col = self.y2_flat
        return col[i] * (1.0 - f) + col[i + 1] * f

    def overlap(self, b: np.ndarray, rhos: tuple[np.ndarray, ...], y2: np.ndarray) -> list[np.ndarray]:
        """Cross-row overlap at ``b`` and Y^(2) ``y2`` for each logit correlation in ``rhos`` (all of one
        shape ``(..., K)``; :meth:`_OverlapTable.__call__` per column, the b index computed once)."""
        x = _x_of_b(b) * (_OV_FINE_X - 1)
        i = x.astype(np.int64)
        np.minimum(i, _OV_FINE_X - 2, out=i)
        x -= i  # fractional part
        i *= _OV_FINE_R
        i += self.ov_off
        excess = y2 - self.inv_n
        t = self.ov_flat
        out = []
        for rho in rhos:
            r = np.cbrt(np.maximum(1.0 - rho, 0.0))
            r *= _OV_FINE_R - 1
            j = r.astype(np.int64)
            np.minimum(j, _OV_FINE_R - 2, out=j)
            r -= j
            ratio = _bilinear(t, i + j, x, r)  # the arithmetic of _OverlapTable.__call__
            ratio *= excess
            ratio += self.inv_n
            out.append(ratio)
        return out


_STACK_LOCK = threading.Lock()


def stacked_tables(ns: tuple[float, ...]) -> StackedTables:
    """:class:`StackedTables` of the key counts ``ns`` (cached; builds missing per-n tables). Each holds a
    copy of its bins' fine overlap tables, ≈ 4 MB per bin (≈ 67 MB for the 16 bins of T = 512). Missing
    per-n tables are built on up to :data:`BUILD_THREADS` threads; concurrent callers wait for one build."""
    with _STACK_LOCK:
        return _stacked_tables(ns)


#: threads that build the missing per-n tables of a stack side by side
BUILD_THREADS = max(1, min(4, os.cpu_count() or 1))


@functools.lru_cache(maxsize=4)
def _stacked_tables(ns: tuple[float, ...]) -> StackedTables:
    missing = [n for n in dict.fromkeys(ns) if n not in _OV_TABLES or n not in _MOM_TABLES]
    if len(missing) > 1 and BUILD_THREADS > 1:
        from concurrent.futures import ThreadPoolExecutor

        def both(n: float) -> None:
            _moment_table(n)
            _overlap_table(n)

        with ThreadPoolExecutor(max_workers=min(BUILD_THREADS, len(missing))) as pool:
            list(pool.map(both, missing))
    return StackedTables(ns)


# --------------------------------------------------------------------------------------------------
# public tabled API
# --------------------------------------------------------------------------------------------------


def moments_b(b: np.ndarray, n: np.ndarray, *, table: bool = False) -> FiniteMoments:
    """:func:`moments` for unchecked arrays ``b`` (effective β) and ``n`` (keys); ``table=True`` always
    reads (or builds) the table instead of integrating a few points directly."""
    if n.size == 1 and (b.size >= _DIRECT_BELOW or table):  # common case: one T, many b
        nk = float(n.ravel()[0])
        shape = np.broadcast_shapes(b.shape, n.shape)
        res = _moment_table(nk)(b.ravel())
        return FiniteMoments(*(res[:, j].reshape(shape) for j in range(6)))
    shape, (bf, nf) = _broadcast(b, n)
    res = np.empty((bf.size, 6))
    if bf.size:
        nu, inv = np.unique(nf, return_inverse=True)
        for k, nk in enumerate(nu):
            sel = (inv.ravel() == k) if nu.size > 1 else slice(None)
            bk = bf[sel]
            nk = float(nk)
            if bk.size < _DIRECT_BELOW and nk not in _MOM_TABLES:
                sq = math.sqrt(math.log(nk))
                with one_blas_thread():
                    rows = [_row_direct(float(bi) * sq, nk)[:6] for bi in bk]
                res[sel] = np.array(rows).reshape(-1, 6)
            else:
                res[sel] = _moment_table(nk)(bk)
    return FiniteMoments(*(res[:, j].reshape(shape) for j in range(6)))


def y2_b(b: np.ndarray, n: np.ndarray, *, table: bool = False) -> np.ndarray:
    """Y^(2) only (unchecked inputs); one table read for the common one-T, many-b case."""
    if n.size == 1 and (b.size >= _DIRECT_BELOW or table):
        return _moment_table(float(n.ravel()[0])).y2(b)
    return moments_b(b, n).y2


def moments(b, T) -> FiniteMoments:
    """Finite-T moments at effective inverse temperature ``b`` (β) with ``T`` keys and ``s = b sqrt(ln T)``.

    Arguments broadcast. One table per distinct T is built on first use (~0.2 s) and cached; later calls
    cost about 30 ns per point.
    """
    b = _check_b("b", b)
    T = _check_n("T", T)
    return moments_b(b, T)


def moments_s(s, n) -> FiniteMoments:
    """Finite moments at explicit logit std ``s`` and ``n`` keys (e.g. decoder rows: n = t, s from ln T)."""
    s = _check_b("s", s)
    n = _check_n("n", n)
    b = s / np.sqrt(np.log(n))
    return moments_b(b, n)


def overlap_b(b: np.ndarray, rho: np.ndarray, n: np.ndarray, y2: np.ndarray | None = None, *,
              table: bool = False) -> np.ndarray:
    """Overlap for unchecked inputs; ``y2`` (Y^(2) at the same b and n) may be passed to save a table read;
    ``table=True`` always reads (or builds) the table."""
    if n.size == 1:
        shape = np.broadcast_shapes(b.shape, rho.shape, n.shape)
        nk = float(n.ravel()[0])
        if math.prod(shape) >= _OV_DIRECT_BELOW or nk in _OV_TABLES or table:
            bb, rr = np.broadcast_arrays(b, rho)
            yy = None if y2 is None else np.broadcast_to(y2, shape)
            return _overlap_table(nk)(bb, rr, yy).reshape(shape)
    shape, (bf, rf, nf) = _broadcast(b, rho, n)
    out = np.empty(bf.size)
    if bf.size:
        nu, inv = np.unique(nf, return_inverse=True)
        for k, nk in enumerate(nu):
            sel = (inv.ravel() == k) if nu.size > 1 else slice(None)
            nk = float(nk)
            bk, rk = bf[sel], rf[sel]
            if bk.size < _OV_DIRECT_BELOW and nk not in _OV_TABLES:
                sq = math.sqrt(math.log(nk))
                with one_blas_thread():
                    out[sel] = [_overlap_point(float(bi) * sq, float(ri), nk) for bi, ri in zip(bk, rk, strict=True)]
            else:
                out[sel] = _overlap_table(nk)(bk, rk)
    return out.reshape(shape)


def overlap(b, rho, T) -> np.ndarray:
    """Cross-row overlap ``E Σ_s A_ts A_τs`` at effective β ``b``, logit correlation ρ, ``T`` keys.

    ``s = b sqrt(ln T)``. Tends to 1/T as b → 0, equals Y^(2) at ρ = 1 and 1/T at ρ = 0.
    """
    b = _check_b("b", b)
    rho = _check_rho(rho)
    T = _check_n("T", T)
    return overlap_b(b, rho, T)


def overlap_s(s, rho, n) -> np.ndarray:
    """Cross-row overlap at explicit logit std ``s``, correlation ρ and ``n`` keys."""
    s = _check_b("s", s)
    rho = _check_rho(rho)
    n = _check_n("n", n)
    return overlap_b(s / np.sqrt(np.log(n)), rho, n)
