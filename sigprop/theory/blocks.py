"""Mean-field maps of the pieces of a transformer block on the token state (q, p) (docs/theory.md §3, §6).

State: ``q`` = mean squared norm per dimension of a token, ``p`` = mean overlap ``x_t·x_τ/d`` of two
distinct tokens; ``ρ = p/q`` is the mean cosine similarity. Every function is vectorised over arrays that
broadcast. One code path per concept; the four block variants (post-/pre-LN × softmax/centred) are
compositions of the same pieces:

* :func:`attention` — softmax or centred (gain-controlled) attention, asymptotic or finite T;
* :func:`value` — ``x W_V + b_V``;
* :func:`residual` — ``α · skip + branch`` (the branch is independent of the skip through W_V / W₂);
* :func:`layernorm` — ``(q, p) → (1, p/q)`` (:func:`cosine`, 0/0 read as 1);
* :func:`mlp` — ``W₂ φ(W₁ x + b₁) + b₂`` (:func:`sigprop.theory.activations.mlp_map`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sigprop.theory import activations, rem

#: Number of representative query positions used for causal (decoder) attention.
CAUSAL_POSITIONS = 24


def cosine(p, q) -> np.ndarray:
    """Mean token cosine ``ρ = p/q`` clipped to [0, 1] — the one definition used everywhere.

    ``q = 0`` (every token the zero vector, e.g. α = 0 with no bias) reads as **ρ = 1**: the tokens are
    identical. This is the limit σ_b² → 0⁺ of the bias-dominated state ``q = p = σ_b²``, so the map is
    continuous there (arXiv 2505.24333 §3: rank collapse is ρ → 1).
    """
    q = np.asarray(q, dtype=float)
    p = np.asarray(p, dtype=float)
    pos = q > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(pos, p / np.where(pos, q, 1.0), 1.0)
    return np.clip(r, 0.0, 1.0)


@dataclass(frozen=True)
class AttentionOut:
    """Output state of an attention layer and the REM statistics of its rows.

    ``y2`` is the row-averaged ``E Σ_s A_ts²``; ``entropy`` the row-averaged Shannon entropy divided by
    ``ln(number of keys)``; ``condensed`` whether ``β > β_c`` (entropy-collapse phase of the T = ∞
    theory); ``beta_c`` the critical β of the attention input (computed on demand).
    """

    q: np.ndarray
    p: np.ndarray
    y2: np.ndarray
    entropy: np.ndarray
    condensed: np.ndarray
    q_in_gap: np.ndarray  # q (q − p) of the attention input

    @property
    def beta_c(self) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.sqrt(2.0 / self.q_in_gap)


def _causal_rows(seq_len: float) -> tuple[np.ndarray, np.ndarray]:
    """Representative numbers of visible keys n_t for rows t = 1..T of a causal layer, and weights.

    Rows are grouped in geometric bins; each bin is represented by its geometric-mean row and weighted
    by the fraction of rows it holds.
    """
    T = int(round(float(seq_len)))
    edges = np.unique(np.round(np.geomspace(1, T + 1, CAUSAL_POSITIONS + 1)).astype(np.int64))
    lo, hi = edges[:-1], edges[1:]  # rows lo..hi-1
    n = np.sqrt(lo * (hi - 1.0))
    w = (hi - lo) / float(T)
    return n, w


def _rows(seq_len: float, causal: bool) -> tuple[np.ndarray, np.ndarray]:
    """Numbers of visible keys of the representative rows, and their weights (one row if not causal)."""
    if seq_len is None:
        return np.array([np.inf]), np.array([1.0])
    if causal:
        return _causal_rows(seq_len)
    return np.array([float(seq_len)]), np.array([1.0])


def _row_stats(b_eff, rho, seq_len, finite_T: bool, causal: bool, want_entropy: bool = True):
    """Row-averaged (Y², O, entropy / ln n) for effective inverse temperature ``b = β sqrt(q(q − p))``.

    Every row's logits have fluctuation std ``s = b sqrt(ln T)``; a row seeing ``n_t`` keys is a REM with
    ``n_t`` configurations, i.e. effective ``b_t = b sqrt(ln T / ln n_t)`` (docs/theory.md §7).
    """
    if not causal or seq_len is None:  # one representative row with n = T keys: no row axis needed
        if finite_T:
            from sigprop.theory import finite

            n1 = np.asarray(float(seq_len))
            b = np.asarray(b_eff, dtype=float)
            if want_entropy:
                mo = finite._moments_b(b, n1)
                y2, ent = mo.y2, mo.entropy / np.log(float(seq_len))
            else:
                y2, ent = finite._y2_b(b, n1), None
            ov = finite._overlap_b(b, np.asarray(rho, dtype=float), n1, y2)
        else:
            y2 = 1.0 - np.minimum(rem.SQRT2 / np.maximum(b_eff, 1e-300), 1.0)  # 1 − m, m = β_c/β
            ov = 0.0
            ent = np.maximum(0.0, 1.0 - 0.5 * b_eff * b_eff) if want_entropy else None
        return y2, ov, ent
    n, w = _rows(seq_len, causal)
    b = np.asarray(b_eff, dtype=float)[..., None]
    r = np.asarray(rho, dtype=float)[..., None]
    one = n < 2  # a row that sees a single key: A = 1
    nn = np.maximum(n, 2.0)
    if finite_T:
        from sigprop.theory import finite

        s = b * np.sqrt(np.log(float(seq_len)))
        mo = finite.moments_s(s, nn)
        y2 = mo.y2
        ov = finite.overlap_s(s, r, nn)
        ent = mo.entropy / np.log(nn)
    else:
        bt = b * np.sqrt(np.log(float(seq_len)) / np.log(nn)) if seq_len is not None else b
        m = np.minimum(rem.SQRT2 / np.maximum(bt, 1e-300), 1.0)  # Parisi m = β_c/β
        y2 = 1.0 - m
        ov = np.zeros_like(y2)
        ent = np.maximum(0.0, 1.0 - 0.5 * bt * bt)
    y2 = np.where(one, 1.0, y2)
    ov = np.where(one, 1.0, ov)
    ent = np.where(one, 0.0, ent)
    return (y2 * w).sum(-1), (ov * w).sum(-1), (ent * w).sum(-1)


def attention(q, p, beta, seq_len, *, kind: str = "softmax", finite_T: bool = True, causal: bool = False) -> AttentionOut:
    """Self-attention ``y_t = Σ_s A_ts x_s`` (softmax) or ``Σ_s (A_ts − 1/n) x_s`` (centred) on state (q, p).

    Result 1 (docs/theory.md §3.1): ``q' = p + (q − p) Y²``, ``p' = p + (q − p) O`` where Y² = E Σ_s A_ts² and
    O = E Σ_s A_ts A_τs (0 at T = ∞). Centred (docs/theory.md §6): ``q' = (q − p)(Y² − 1/n)``,
    ``p' = (q − p)(O − 1/n)`` — the branch never adds a component common to all tokens.
    The logits of a row have fluctuation variance ``β² ln T · q (q − p)`` with T = ``seq_len``.
    """
    if kind not in ("softmax", "centred"):
        raise ValueError(f"attention kind must be 'softmax' or 'centred'; got {kind!r}")
    if seq_len is not None and not (np.isfinite(seq_len) and seq_len >= 2):
        raise ValueError(f"seq_len (T) must be ≥ 2; got {seq_len}")
    beta = np.asarray(beta, dtype=float)
    if np.any(~np.isfinite(beta)) or np.any(beta < 0):
        raise ValueError("beta must be finite and ≥ 0")
    return _attention(np.asarray(q, dtype=float), np.asarray(p, dtype=float), beta, seq_len, kind,
                      finite_T and seq_len is not None, causal)


def _attention(q, p, beta, seq_len, kind: str, finite_T: bool, causal: bool, want_entropy: bool = True) -> AttentionOut:
    """:func:`attention` without input checks (the propagation validates its spec once)."""
    gap = np.maximum(q - p, 0.0)
    qgap = q * gap
    b_eff = beta * np.sqrt(qgap)
    rho = cosine(p, q) if (finite_T or causal) else None
    y2, ov, ent = _row_stats(b_eff, rho, seq_len, finite_T, causal, want_entropy)
    condensed = b_eff > rem.SQRT2  # β > β_c = sqrt(2 / (q (q − p)))
    if kind == "softmax":
        q_out = p + gap * y2
        p_out = p if (np.ndim(ov) == 0 and ov == 0.0) else p + gap * ov
    else:
        inv_n = 0.0 if (seq_len is None or not finite_T) else _mean_inv_keys(seq_len, causal)
        q_out = gap * np.maximum(y2 - inv_n, 0.0)
        p_out = gap * np.clip(ov - inv_n, 0.0, None)
    return AttentionOut(q_out, p_out, y2, ent, condensed, qgap)


def _mean_inv_keys(seq_len, causal: bool) -> float:
    n, w = _rows(seq_len, causal)
    return float(np.sum(w / n))


def value(q, p, sigma_v2, sigma_bv2) -> tuple[np.ndarray, np.ndarray]:
    """``v = x W_V + b_V`` with ``W_V ~ N(0, σ_v²/d)``, ``b_V ~ N(0, σ_bv²)``: ``(σ_v² q + σ_bv², σ_v² p + σ_bv²)``."""
    return sigma_v2 * np.asarray(q) + sigma_bv2, sigma_v2 * np.asarray(p) + sigma_bv2


def residual(skip_q, skip_p, branch_q, branch_p, alpha) -> tuple[np.ndarray, np.ndarray]:
    """``α · skip + branch``; skip and branch add in quadrature (cross term zero through a random W)."""
    a2 = np.asarray(alpha, dtype=float) ** 2
    return a2 * skip_q + branch_q, a2 * skip_p + branch_p


def layernorm(q, p) -> tuple[np.ndarray, np.ndarray]:
    """LayerNorm without affine parameters: ``(q, p) → (1, p/q)`` (mean subtraction is O(1/d)).

    q is returned as a 0-d array (it broadcasts), which lets the MLP use one kernel table for the grid.
    """
    return np.asarray(1.0), cosine(p, q)


def mlp(q, p, activation, sigma_w2, sigma_b2) -> tuple[np.ndarray, np.ndarray]:
    """``W₂ φ(W₁ x + b₁) + b₂`` with ``W ~ N(0, σ_w²/fan_in)``, biases ``N(0, σ_b²)``."""
    return activations.mlp_map(activation, q, p, sigma_w2, sigma_b2)


@dataclass(frozen=True)
class BlockOut:
    """State after one block, plus what the block's attention saw (for diagrams and reports)."""

    q: np.ndarray
    p: np.ndarray
    attn: AttentionOut


def block(q, p, spec, *, finite_T: bool = True, scale=1.0, want_entropy: bool = True) -> BlockOut:
    """One transformer block of ``spec`` (post-/pre-LN × softmax/centred) on state (q, p).

    Post-LN: ``x ← LN(α_SA x + V(A(x)))``, ``x ← LN(α_MLP x + MLP(x))``.
    Pre-LN:  ``x ← α_SA x + V(A(LN x))``, ``x ← α_MLP x + MLP(LN x)``; the attention β_c is evaluated on
    ``LN x`` (the corrected pre-LN β_c, docs/theory.md §3.5).
    The value bias cancels in centred attention (``Σ_s (A_ts − 1/n) = 0``).

    ``scale``: the pre-LN residual stream is stored as ``(q, p)/scale`` so that it stays finite when it
    grows like α^{2L}; branch outputs are divided by it (post-LN ignores it: its state is normalised).
    """
    seq_len = spec.seq_len
    if spec.norm == "pre":
        qa, pa = layernorm(q, p)
    else:
        qa, pa = q, p
    att = _attention(np.asarray(qa, dtype=float), np.asarray(pa, dtype=float), spec.beta, seq_len, spec.attention,
                     finite_T, spec.causal, want_entropy)
    bias_v = 0.0 if spec.attention == "centred" else spec.bias_v2
    qv, pv = value(att.q, att.p, spec.sigma_v2, bias_v)
    if spec.norm == "pre":
        qv, pv = qv / scale, pv / scale
    q1, p1 = residual(q, p, qv, pv, spec.alpha_sa)
    if spec.norm == "post":
        q1, p1 = layernorm(q1, p1)
        qm, pm = mlp(q1, p1, spec.activation, spec.sigma_w2, spec.sigma_b2)
        q2, p2 = layernorm(*residual(q1, p1, qm, pm, spec.alpha_mlp))
    else:
        qn, pn = layernorm(q1, p1)
        qm, pm = mlp(qn, pn, spec.activation, spec.sigma_w2, spec.sigma_b2)
        q2, p2 = residual(q1, p1, qm / scale, pm / scale, spec.alpha_mlp)
    return BlockOut(q2, p2, att)
