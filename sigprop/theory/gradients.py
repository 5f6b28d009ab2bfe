"""Result 2: expected squared gradient norms of one self-attention layer at initialisation (docs/theory.md §4).

Setting and assumptions
-----------------------
One self-attention layer (any number of heads, sigprop convention of :mod:`sigprop.spec`) acting on tokens
``x_1..x_T ∈ R^d`` with mean-field overlaps ``x_t·x_t/d = q`` and ``x_t·x_s/d = p`` (t ≠ s), ``ρ = p/q``:

    a^h_ts = (W_Q^h x_t)·(W_K^h x_s) / sqrt(d_h),   A^h_t = softmax_s(a^h_t),   y^h_t = Σ_s A^h_ts v^h_s,
    v_s = W_V x_s + b_V,   W_Q, W_K ~ N(0, σ_K²) with σ_K² = β sqrt(ln T)/d,   W_V ~ N(0, σ_v²/d).

An upstream gradient ``δ_t = ∂L/∂y_t`` arrives at the attention output. We assume

* the ``δ_t`` of different rows are uncorrelated with zero mean (exact for random upstream gradients; a
  good approximation for a token-wise loss whose per-token gradients are weakly correlated), and
  independent of ``W_Q, W_K, W_V`` (exact for an external random ``δ``; an approximation when ``δ`` is
  produced by the network itself, e.g. through the MLP/LN after the attention);
* ``d → ∞`` first: the logits of a row are Gaussian; in the averages over ``W_K`` (for ``∂W_Q``) the
  dependence of ``A`` on ``W_K`` is neglected (the REM statistics of ``A`` are then used as they are);
* ``|δ_t|`` enters only through ``Δ = Σ_t |δ_t|²`` (argument ``delta2``).

Derivation (``c^h_ts = (J^h_t g^h_t)_s``, ``g^h_ts = δ^h_t·v^h_s``, ``J_t = diag(A_t) − A_t A_tᵀ``, Gram
matrix ``Q_ts = x_t·x_s/d``):

    ∂L/∂W_Q^h = d_h^{-1/2} Σ_{t,s} c^h_ts (W_K^h x_s) x_tᵀ
    E_{W_K} ‖∂L/∂W_Q^h‖² = d² σ_K² Σ_{t,t'} Q_tt' c^hᵀ_t Q c^h_t'
    E_{W_V} g^h_t g^hᵀ_t' = (δ^h_t·δ^h_t') (σ_v² Q + σ_bV² 11ᵀ).

The ``d_h`` of the logit scale cancels the ``d_h`` coordinates of ``W_K^h x_s``, uncorrelated ``δ`` kill
the ``t ≠ t'`` terms, ``J_t 1 = 0`` kills the value bias and the ``p 11ᵀ`` part of ``Q``, and
``tr(J Q J Q) = (q − p)² tr J²`` for the mean-field ``Q = (q − p) I + p 11ᵀ``. Summing the heads gives the
**head-count-independent** law (heads enter only through β, which sigprop defines per head-independently):

    E ‖∂L/∂W_Q‖_F² ≃ d² σ_K² q σ_v² (q − p)² Δ · E tr J²
                   = d β sqrt(ln T) q σ_v² (q − p)² Δ · E tr J².

``E tr J² = Y² − 2Y³ + E[(Σ_s A_s²)²]``: exact finite-T REM expectation (:mod:`sigprop.theory.finite`,
``y2 − 2 y3 + y4 + pair22``) or the T = ∞ value ``m(1 − m)/3`` with ``m = β_c/β``, which gives

    E ‖∂L/∂W_Q‖² → d sqrt(ln T) σ_v² q (q − p)² Δ · (β_c/3) (1 − β_c/β)₊,   β_c = sqrt(2/(q(q − p))).

**W_K** obeys the same law: ``∂L/∂W_K^h = d_h^{-1/2} Σ c^h_ts (W_Q^h x_t) x_sᵀ``, and averaging over
``W_Q`` instead of ``W_K`` gives the identical expression because ``σ_Q = σ_K`` and the logits are symmetric
in the two matrices (query and key Gram factors ``Q_tt'`` and ``Q_ss'`` swap roles).

**W_V**: ``∂L/∂W_V^h = Σ_t δ^h_t (Σ_s A^h_ts x_s)ᵀ``, so with uncorrelated ``δ``

    E ‖∂L/∂W_V‖_F² ≃ d Δ (p + (q − p) Y²)        (the Result-1 output norm q' times d Δ),

independent of β except through Y² (T = ∞: ``Y² = (1 − β_c/β)₊``). The value bias gradient is ``Σ_t δ_t``.

Finite width (optional, ``finite_width=True``): keeping the exact Gram matrix ``Q = XXᵀ/d`` of Gaussian
tokens and averaging it by Isserlis' theorem (``A`` treated as independent of it) gives
``E tr(J Q J Q) = (q − p)² [(1 + 1/d) E tr J² + E (1 − Σ_s A_s²)² / d]``. The second term is the
``(tr J)²/d`` of a rank-d Gram matrix; it dominates when ``E tr J² ≲ 1/d``, i.e. in the low-β phase with
``T > d``, where the d → ∞ law underestimates the gradient (docs/theory.md §4 reports 2–6× at β ≤ 0.5).

Where the theory stops
----------------------
These are **single-layer** laws given the state ``(q, p)`` seen by the attention and the upstream
``Δ = Σ_t |δ_t|²``. For layer ℓ of a deep stack one can use the propagated ``(q, p)`` of
:func:`sigprop.theory.propagate.propagate` and a *measured* ``Δ_ℓ`` (clearly a per-layer prediction
conditional on the measured upstream gradient). Predicting ``Δ_ℓ`` itself through depth (backward
propagation through LN, MLP and residual Jacobians, and the correlation of ``δ`` with the forward weights)
is **not** done here.
"""

from __future__ import annotations

import numpy as np

from sigprop.theory import rem, rows

__all__ = [
    "trace_j2",
    "wq_grad_norm2",
    "wk_grad_norm2",
    "wv_grad_norm2",
    "scaled_wq_grad",
    "relative_wq_grad",
    "vanishing_mask",
]


def _arr(name: str, x, *, positive: bool = False) -> np.ndarray:
    try:
        a = np.asarray(x, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numeric; got {x!r}") from None
    if np.any(~np.isfinite(a)) or np.any(a <= 0 if positive else a < 0):
        raise ValueError(f"{name} must be finite and {'> 0' if positive else '≥ 0'}")
    return a


def _check(beta, rho, seq_len, q):
    beta = _arr("beta", beta)
    rho = _arr("rho", rho)
    if np.any(rho > 1):
        raise ValueError("rho must be in [0, 1]")
    T = _arr("seq_len", seq_len)
    if np.any(T < 2):
        raise ValueError("seq_len (T) must be ≥ 2")
    q = _arr("q", q, positive=True)
    return beta, rho, T, q


def _moments(b, T, finite_T: bool):
    """(E tr J², Y², E(1 − ΣA²)²) for effective inverse temperature ``b`` and T keys
    (:func:`sigprop.theory.rows.row_stats`)."""
    st = rows.row_stats(b, None, T, finite_T=finite_T, moments=True)
    if not finite_T:
        m = 1.0 - st.y2
        return m * (1 - m) / 3.0, st.y2, st.one_minus_y2_sq
    return st.trace_j2, st.y2, st.one_minus_y2_sq


def trace_j2(beta, rho=0.0, seq_len=512, *, q=1.0, finite_T: bool = True) -> np.ndarray:
    """``E tr J_t²`` of one attention row (``J_t = diag(A_t) − A_t A_tᵀ``): finite T or T = ∞ (``m(1−m)/3``)."""
    beta, rho, T, q = _check(beta, rho, seq_len, q)
    b = beta * q * np.sqrt(1.0 - rho)
    return _moments(b, T, finite_T)[0]


def wq_grad_norm2(beta, rho=0.0, *, seq_len=512, width=512, q=1.0, sigma_v2=1.0, delta2=1.0,
                  finite_T: bool = True, finite_width: bool = False) -> np.ndarray:
    """Predicted ``E ‖∂L/∂W_Q‖_F²`` of one attention layer at initialisation (Result 2, module docstring).

    ``d β sqrt(ln T) q σ_v² (q − p)² Δ E tr J²`` with ``p = ρ q``, ``Δ = delta2 = Σ_t |δ_t|²``;
    ``finite_T=False`` uses ``E tr J² = m(1 − m)/3`` (T = ∞ REM), which makes it
    ``d sqrt(ln T) σ_v² q (q − p)² Δ (β_c/3)(1 − β_c/β)₊``. ``finite_width=True`` adds the rank-d Gram
    correction (module docstring). All arguments broadcast.
    """
    beta, rho, T, q = _check(beta, rho, seq_len, q)
    d = _arr("width", width, positive=True)
    sv2 = _arr("sigma_v2", sigma_v2)
    delta2 = _arr("delta2", delta2)
    gap = q * (1.0 - rho)  # q − p
    b = beta * np.sqrt(q * gap)
    trj2, _, one_minus_y2_sq = _moments(b, T, finite_T)
    if finite_width:
        trj2 = (1.0 + 1.0 / d) * trj2 + one_minus_y2_sq / d
    return d * beta * np.sqrt(np.log(T)) * q * sv2 * gap**2 * delta2 * trj2


def wk_grad_norm2(beta, rho=0.0, **kw) -> np.ndarray:
    """Predicted ``E ‖∂L/∂W_K‖_F²``: the same law as :func:`wq_grad_norm2` (Q ↔ K symmetry, module doc)."""
    return wq_grad_norm2(beta, rho, **kw)


def wv_grad_norm2(beta, rho=0.0, *, seq_len=512, width=512, q=1.0, delta2=1.0, finite_T: bool = True) -> np.ndarray:
    """Predicted ``E ‖∂L/∂W_V‖_F² = d Δ (p + (q − p) Y²)`` (uncorrelated δ; Y² finite T or T = ∞)."""
    beta, rho, T, q = _check(beta, rho, seq_len, q)
    d = _arr("width", width, positive=True)
    delta2 = _arr("delta2", delta2)
    gap = q * (1.0 - rho)
    _, y2, _ = _moments(beta * np.sqrt(q * gap), T, finite_T)
    return d * delta2 * (q * rho + gap * y2)


def scaled_wq_grad(beta, rho=0.0, *, seq_len=512, width=512, q=1.0, sigma_v2=1.0, delta2=None,
                   grad_scale: float = 1.0, finite_T: bool = True, finite_width: bool = False) -> np.ndarray:
    """Fig 3c scaling ``‖∂L/∂W_Q‖² · T d⁻² (ln T)^{-1/2}`` of the predicted norm.

    ``delta2=None`` models a token-averaged loss whose per-token squared gradient grows like the width
    (as in a BERT MLM head with a fixed-std readout): ``Δ = grad_scale · d / T``. The scaled value is then
    ``grad_scale · β q σ_v² (q − p)² E tr J²`` — independent of d, and of T only through the (slow,
    logarithmic) finite-T dependence of ``E tr J²``; at T = ∞ it is exactly
    ``grad_scale · q σ_v² (q − p)² (β_c/3)(1 − β_c/β)₊``: the collapse of the curves.
    """
    T = _arr("seq_len", seq_len)
    d = _arr("width", width, positive=True)
    if delta2 is None:
        delta2 = grad_scale * d / T
    g = wq_grad_norm2(beta, rho, seq_len=seq_len, width=width, q=q, sigma_v2=sigma_v2, delta2=delta2,
                      finite_T=finite_T, finite_width=finite_width)
    return g * T / (d**2 * np.sqrt(np.log(T)))


def relative_wq_grad(beta, rho=0.0, *, seq_len=512, q=1.0, finite_T: bool = True) -> np.ndarray:
    """Predicted ‖∂L/∂W_Q‖² divided by its β → ∞ limit under the T = ∞ law, at the same (ρ, q, T).

    The reference ``d sqrt(ln T) σ_v² q (q − p)² Δ β_c/3`` is the T = ∞ formula's large-β plateau, chosen
    because it is closed-form. (At finite T, ``β E tr J²`` also tends to a constant as β → ∞ — near-ties of
    the two largest logits give ``E tr J² ∝ 1/β`` — but it is approached slowly: at T = 512 it still grows
    by 27% between β = 5 and β = 100.) The ratio ``3 b E tr J²(b) / √2`` depends only on
    ``b = β sqrt(q(q − p))`` and T; at T = ∞ it is ``(1 − √2/b)₊``; at T = 512 it is 0.002 at b = 0.3,
    0.37 at b = 1.5 and 0.70 at b = 6. It increases monotonically with b over [0.3, 5] (tested).
    """
    beta, rho, T, q = _check(beta, rho, seq_len, q)
    b = beta * q * np.sqrt(1.0 - rho)
    trj2 = _moments(b, T, finite_T)[0]
    return 3.0 * b * trj2 / rem.SQRT2


def vanishing_mask(diagram, fraction: float = 0.1) -> np.ndarray:
    """Boolean array of the diagram's shape: True where W_Q gradients vanish at the first attention layer.

    For each grid point the first block's attention sees ``(q0, ρ0)`` (post-LN: the raw input; pre-LN:
    ``LN(x)``, so q = 1) with that point's β (and ρ0, q0 if they are axes; other axes leave the first
    layer unchanged). A point is flagged when the predicted ‖∂L/∂W_Q‖² is below ``fraction`` times its
    large-β reference, the β → ∞ plateau of the T = ∞ law at the same (ρ0, q0, T)
    (:func:`relative_wq_grad`). Finite-T statistics are used when the diagram was computed with
    ``finite_T``. Causal diagrams average ``E tr J²`` over rows seeing ``n_t = t`` keys (equal ``|δ_t|``).

    Because the reference shares the ``(q − p)²`` factor, this flags the **low-β (REM) vanishing**
    only, not the additional suppression of the gradient near rank collapse (ρ0 → 1).
    """
    if not (0.0 < float(fraction) < 1.0 + 1e-12):
        raise ValueError(f"fraction must be in (0, 1]; got {fraction}")
    spec = diagram.spec
    xv = np.asarray(diagram.x_values, dtype=float)
    yv = np.asarray(diagram.y_values, dtype=float)
    shape = (yv.size, xv.size)
    vals = {n: getattr(spec, n) for n in ("beta", "rho0", "q0")}
    for name, v in ((diagram.x_name, xv[None, :]), (diagram.y_name, yv[:, None])):
        if name in vals:
            vals[name] = v
    beta = np.broadcast_to(np.asarray(vals["beta"], dtype=float), shape)
    rho = np.broadcast_to(np.asarray(vals["rho0"], dtype=float), shape)
    q = np.broadcast_to(np.asarray(vals["q0"], dtype=float), shape) if spec.norm == "post" else np.ones(shape)
    b = beta * q * np.sqrt(np.clip(1.0 - rho, 0.0, None))
    finite_T = bool(getattr(diagram, "finite_T", True))
    T = float(spec.seq_len)
    if finite_T and spec.causal:  # rows seeing n_t ≥ 2 keys, weighted by the rows they stand for
        n, w = rows.causal_rows(T)
        keep = n >= 2
        n, w = n[keep], w[keep]
        trj2 = rows.row_stats(b[..., None], n, T, moments=True).trace_j2
        trj2 = (trj2 * w).sum(-1) / max(w.sum(), 1e-300)
    else:
        trj2 = _moments(b, T, finite_T)[0]
    rel = 3.0 * b * trj2 / rem.SQRT2
    return np.asarray(rel < float(fraction), dtype=bool).reshape(shape)
