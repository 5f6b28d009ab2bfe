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

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from sigprop.spec import GATED
from sigprop.spec import recipe as spec_recipe
from sigprop.theory import activations, rem, rows

#: Position bins of a causal (decoder) layer as imported (``None``: the default scheme of
#: :func:`sigprop.theory.rows.causal_bins`); set :data:`sigprop.theory.rows.CAUSAL_POSITIONS` to change them.
CAUSAL_POSITIONS = rows.CAUSAL_POSITIONS


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
    theory); ``beta_c`` the critical β of the attention input (computed on demand). For a causal layer
    ``q`` and ``p`` are per position (``(..., K)`` and ``(..., K, K)``, :func:`causal_attention`).
    """

    q: np.ndarray
    p: np.ndarray
    y2: np.ndarray
    entropy: Any  # np.ndarray, None when not requested
    condensed: np.ndarray
    q_in_gap: np.ndarray  # q (q − p) of the attention input

    @property
    def beta_c(self) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.sqrt(2.0 / self.q_in_gap)


def attention(q, p, beta, seq_len, *, kind: str = "softmax", finite_T: bool = True, causal: bool = False,
              window: int | None = None) -> AttentionOut:
    """Self-attention ``y_t = Σ_s A_ts x_s`` (softmax) or ``Σ_s (A_ts − 1/n) x_s`` (centred) on state (q, p).

    Result 1 (docs/theory.md §3.1): ``q' = p + (q − p) Y²``, ``p' = p + (q − p) O`` where Y² = E Σ_s A_ts² and
    O = E Σ_s A_ts A_τs (0 at T = ∞). Centred (docs/theory.md §6): ``q' = (q − p)(Y² − 1/n)``,
    ``p' = (q − p)(O − 1/n)`` — the branch never adds a component common to all tokens.
    The logits of a row have fluctuation variance ``β² ln T · q (q − p)`` with T = ``seq_len``.
    A causal layer (docs/theory.md §7) is resolved per position; this function feeds it the same state at
    every position and returns the all-token means (q̄ over rows, p̄ over distinct pairs).
    """
    if kind not in ("softmax", "centred"):
        raise ValueError(f"attention kind must be 'softmax' or 'centred'; got {kind!r}")
    if seq_len is not None and not (np.isfinite(seq_len) and seq_len >= 2):
        raise ValueError(f"seq_len (T) must be ≥ 2; got {seq_len}")
    beta = np.asarray(beta, dtype=float)
    if np.any(~np.isfinite(beta)) or np.any(beta < 0):
        raise ValueError("beta must be finite and ≥ 0")
    q, p = np.asarray(q, dtype=float), np.asarray(p, dtype=float)
    finite_T = finite_T and seq_len is not None
    if causal and seq_len is not None:
        geo = rows.geometry(int(seq_len), True, window)
        qa, pa = spread(q, p, geo)
        out = causal_attention(qa, pa, beta, geo, kind=kind, finite_T=finite_T)
        qm, pm = all_tokens(out.q, out.p, geo)
        return AttentionOut(qm, pm, out.y2, out.entropy, out.condensed, out.q_in_gap)
    return _attention(q, p, beta, seq_len, kind, finite_T, window=window)


def _attention(q, p, beta, seq_len, kind: str, finite_T: bool, want_entropy: bool = True, *,
               window: int | None = None, cbar: float | None = None) -> AttentionOut:
    """:func:`attention` of a non-causal layer without input checks (every row sees ``min(T, W)`` keys).

    ``cbar`` (RoPE, ``None`` = none): the logit fluctuation variance is ``β² ln T q (q − c̄ p)``
    (docs/theory.md §3).
    """
    gap = np.maximum(q - p, 0.0)
    qgap = q * gap if cbar is None else q * np.maximum(q - cbar * p, 0.0)
    b_eff = beta * np.sqrt(qgap)
    W = window if (seq_len is not None and rows.windowed(int(seq_len), False, window)) else None
    rho = cosine(p, q) if finite_T else None
    n_row = None if W is None else float(min(W, seq_len))  # a middle row's keys; rows at the ends see fewer
    st = rows.row_stats(b_eff, n_row, seq_len, finite_T=finite_T, rho=rho, entropy=want_entropy)
    y2, ent = st.y2, st.entropy
    ov: Any = st.overlap if finite_T else 0.0
    inv_n = 0.0
    if finite_T:
        inv_n = 1.0 / float(seq_len)
    inv_pair = inv_n
    if W is not None and finite_T:  # rows far apart share fewer keys: O = S + S₂ (ov − 1/n), Y² its 1/n mean
        assert n_row is not None  # W is set
        geo = rows.geometry(int(seq_len), False, W)
        inv_n = float(geo.inv_n[0])
        y2 = np.clip(y2 + (inv_n - 1.0 / n_row), 0.0, 1.0)  # a condensed row's Y² ≈ 1 stays ≤ 1
        ov = geo.shared[0, 0] + geo.shared2[0, 0] * (ov - 1.0 / n_row)
        inv_pair = float(geo.shared[0, 0])
    condensed = b_eff > rem.SQRT2  # β > β_c = sqrt(2 / (q (q − p)))
    if kind == "softmax":
        q_out = p + gap * y2
        p_out = p if (np.ndim(ov) == 0 and ov == 0.0) else p + gap * ov
    else:
        q_out = gap * np.maximum(y2 - inv_n, 0.0)
        p_out = gap * np.clip(ov - inv_pair, 0.0, None)
    return AttentionOut(q_out, p_out, y2, ent, condensed, qgap)


# --------------------------------------------------------------------------- causal, per position


#: rows per product in :func:`tall_matmul`: each BLAS call stays below OpenBLAS's threading threshold
ROW_BLOCK = 64


def tall_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for a tall ``(N, K)`` ``a`` and a small ``(K, J)`` or ``(K,)`` ``b``, as a stack of small
    products that each run on the calling thread.

    One tall GEMM is split over BLAS threads; next to the chunk threads of a causal propagation these
    oversubscribe the cores (``(45056, 22) @ (22, 22)``: 28 ms as one call, 2.5 ms stacked, 2 loaded cores).
    """
    N = a.shape[0]
    if a.ndim != 2 or N % ROW_BLOCK or N <= ROW_BLOCK:
        return a @ b
    out = np.matmul(a.reshape(N // ROW_BLOCK, ROW_BLOCK, a.shape[1]), b)
    return out.reshape(N, *b.shape[1:])


def spread(q, p, geo: rows.RowGeometry) -> tuple[np.ndarray, np.ndarray]:
    """A uniform state (q, p) as a per-position state: ``q`` → ``(..., K)``, ``p`` → ``(..., K, K)``."""
    K = geo.size
    q = np.asarray(q, dtype=float)
    p = np.asarray(p, dtype=float)
    return np.broadcast_to(q[..., None], (*q.shape, K)), np.broadcast_to(p[..., None, None], (*p.shape, K, K))


def all_tokens(q, p, geo: rows.RowGeometry, *, last: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """All-token means of a per-position state: q̄ over rows and p̄ over distinct pairs (or the last tokens)."""
    rw, pw = (geo.last_row_w, geo.last_pair_w) if last else (geo.row_w, geo.pair_w)
    q = np.asarray(q, dtype=float)
    p = np.asarray(p, dtype=float)
    qm = _rows_dot(q, rw) if q.ndim else q * 1.0
    K = pw.shape[0]
    return qm, _rows_dot(p.reshape(*p.shape[:-2], K * K), pw.ravel())


def _rows_dot(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``x @ w`` over the last axis of ``x`` (:func:`tall_matmul` on the flattened leading axes)."""
    if x.ndim < 2:
        return x @ w
    return tall_matmul(np.ascontiguousarray(x).reshape(-1, x.shape[-1]), w).reshape(x.shape[:-1])


def _lower(x: np.ndarray) -> np.ndarray:
    """``X_ij = x_min(i,j)``: the value of the lower (earlier) bin of each pair, ``(G, K)`` → ``(G, K, K)``."""
    return np.take(x, _lower_index(x.shape[-1]), axis=-1)  # C-ordered (fancy indexing would not be)


@functools.lru_cache(maxsize=16)
def _lower_index(K: int) -> np.ndarray:
    i = np.arange(K)
    return np.minimum.outer(i, i)


#: condensed rows prefer keys far from the keys' centroid (docs/theory.md §7); False: uniform key weights
KEY_PREFERENCE = True


# long: pair arrays reused in place step to step (the causal diagram's hot path); split, they would be copied
def causal_attention(qa, pa, beta, geo: rows.RowGeometry, *, kind: str = "softmax", finite_T: bool = True,
                     want_entropy: bool = True, cbar: float | None = None, packed: bool = False,
                     pk=None) -> AttentionOut:
    """Causal (or sliding-window) attention on a per-position state (docs/theory.md §7).

    ``qa`` ``(..., K)``: q of the tokens of each position bin; ``pa`` ``(..., K, K)``: overlaps of distinct
    tokens of two bins (diagonal: two distinct tokens of one bin). Row t sees ``n_t`` keys; with ``V`` the
    fraction of its keys in each bin, its keys have mean norm ``q̄_t = V q`` and mean pair overlap
    ``p̄_t = (V p Vᵀ − d/n)/(1 − 1/n)`` (``d`` the within-bin overlaps); its logits fluctuate with variance
    ``β² ln T q_t (q̄_t − p̄_t)``, a REM with n_t keys. Then

    * ``q'_t = p̄_t + (q̄_t − p̄_t) Y²_t``,
    * ``p'_tτ = P̄_tτ + (q̄ − P̄_tτ) O_tτ`` for rows t < τ, with ``P̄_tτ`` the mean overlap of a key of t and a
      distinct key of τ and ``O_tτ = E Σ_s A_ts A_τs = m/(n_t n_τ) + m²/(n_t n_τ) (ov_t(c_tτ) − 1/n_t)``
      (``m`` shared keys; ``ov_t`` the finite-T overlap of two rows with n_t keys and logit correlation
      ``c_tτ``, the cosine of the two query tokens). Uniform attention (β → 0) gives exactly
      ``O_tτ = 1/max(t, τ)`` and ``Y²_t = 1/t``.

    Keys are not equally attended: after the row's REM temperature is set from the uniform key means, the
    key weights V become :func:`_key_weights` (keys far from the keys' centroid have larger logit variance
    and win more often) in p̄_t, q̄_t and P̄_tτ (``KEY_PREFERENCE``).

    Bin means of the exactly known 1/n and m/(n n) parts come from :func:`sigprop.theory.rows.geometry`; the
    REM excesses (Y²_t − 1/n_t, ov − 1/n) are evaluated at each bin's representative row. T = ∞
    (``finite_T=False``): ``Y²_t = 1 − m_t`` with ``m_t = √2/(b_t sqrt(ln T/ln n_t))`` and ``O = 0``.

    ``packed``: return ``p`` as its upper triangle ``(..., K(K+1)/2)`` (:func:`pack_pairs`; it is symmetric);
    ``pk``: the packed form of ``pa`` if the caller has it (saves packing it again).
    """
    K = geo.size
    qa = np.asarray(qa, dtype=float)
    pa = np.asarray(pa, dtype=float)
    beta = np.asarray(beta, dtype=float)
    shape = np.broadcast_shapes(qa.shape[:-1], pa.shape[:-2], beta.shape)
    G = math.prod(shape)
    qa = np.broadcast_to(qa, (*shape, K)).reshape(G, K)
    pa = np.broadcast_to(pa, (*shape, K, K)).reshape(G, K, K)
    bt = np.broadcast_to(beta, shape).reshape(G)
    inv_n = geo.inv_n
    qbar, pown, gap, b, M, dV = _key_means(qa, pa, bt, geo, cbar)
    if packed:  # the pair arrays below on the upper triangle only (lower bin of pair (i ≤ j): i)
        idx = _pack_index(K)[0]
        S, S2, inv_S = geo.shared.ravel()[idx], geo.shared2.ravel()[idx], geo.inv_one_minus_shared.ravel()[idx]
        Pb = np.take(M.reshape(G, K * K), idx, axis=-1)
        lower = _pack_lower
    else:
        S, S2, inv_S, Pb, lower = geo.shared, geo.shared2, geo.inv_one_minus_shared, M, _lower
    # P̄ = (V p Vᵀ − S d)/(1 − S): the mean overlap of a key of row i and a distinct key of row j
    own = lower(dV)
    own *= S
    Pb -= own
    Pb *= inv_S
    c: Any = None
    c_lo: Any = None
    c_hi: Any = None
    if finite_T:  # query cosines c of the pairs, and each row's smallest and largest
        pairs = (pa.reshape(G, K * K) if pk is None else np.broadcast_to(pk, (*shape, pk.shape[-1])).reshape(G, -1)
                 ) if packed else pa
        if np.all(qa == qa[:1, :1]):  # the same q everywhere (after a LayerNorm): c = p/q, monotone in p
            inv_q = 1.0 / max(float(qa[0, 0]), 1e-300)
            c = pairs * inv_q
            np.clip(c, 0.0, 1.0, out=c)
            c_lo, c_hi = _min_max_rows(pa)
            c_lo *= inv_q
            c_hi *= inv_q
            np.clip(c_lo, 0.0, 1.0, out=c_lo)
            np.clip(c_hi, 0.0, 1.0, out=c_hi)
        else:
            inv_sq = 1.0 / np.sqrt(np.maximum(qa, 1e-300))
            cf = pa * inv_sq[:, :, None]
            cf *= inv_sq[:, None, :]
            np.clip(cf, 0.0, 1.0, out=cf)
            c_lo, c_hi = _min_max_rows(cf)
            c = np.take(cf.reshape(G, K * K), idx, axis=-1) if packed else cf
        if packed and pk is None:
            c = np.take(c, idx, axis=-1)
    y2, ent, e0, e1 = _row_statistics(b, c_lo, c_hi, geo, finite_T, want_entropy)
    np.clip(y2, 0.0, 1.0, out=y2)
    gapP = lower(qbar)
    gapP -= Pb
    np.maximum(gapP, 0.0, out=gapP)
    if finite_T:  # REM excess overlap of each pair, at its lower (earlier) row bin, weight m²/(n n)
        ex = lower(e1)
        ex *= c
        ex += lower(e0)
        ex *= S2
    if kind == "softmax":
        q_out = pown + gap * y2
        if finite_T:
            ex += S
            ex *= gapP
            ex += Pb
            p_out = ex
        else:
            p_out = Pb
    else:
        q_out = gap * np.maximum(y2 - (inv_n if finite_T else 0.0), 0.0)
        p_out = gapP * np.maximum(ex, 0.0) if finite_T else np.zeros(Pb.shape)
    qm, pm = all_tokens(qa, pa, geo)
    qgap = qm * np.maximum(qm - pm, 0.0)
    condensed = bt * np.sqrt(qgap) > rem.SQRT2  # of the all-token state (as for an encoder)
    entm = None if ent is None else tall_matmul(ent, geo.entropy_w).reshape(shape)
    return AttentionOut(q_out.reshape(*shape, K), p_out.reshape(*shape, *p_out.shape[1:]), tall_matmul(y2, geo.row_w).reshape(shape),
                        entm, condensed.reshape(shape), qgap.reshape(shape))


def _min_max_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Smallest and largest entry of each row of symmetric ``(G, K, K)`` matrices, ``(G, K)`` each (an
    elementwise pass per row bin: several times faster than a reduction over a short axis)."""
    lo = x[:, 0, :].copy()
    hi = lo.copy()
    for j in range(1, x.shape[1]):
        np.minimum(lo, x[:, j, :], out=lo)
        np.maximum(hi, x[:, j, :], out=hi)
    return lo, hi


def _key_means(qa, pa, bt, geo: rows.RowGeometry, cbar):
    """Mean key norm q̄, own-key pair overlap p̄, spread q̄ − p̄ and effective β of each row bin, the key
    overlaps ``M = W p Wᵀ`` of pairs of row bins and the within-bin overlaps over each row's keys ``d``
    (``(G, K)`` × 4, ``(G, K, K)``, ``(G, K)``; W the key weights, V without key preference); see
    :func:`causal_attention`."""
    V = geo.vis
    inv_n = geo.inv_n
    one = geo.n < 2
    dg = np.ascontiguousarray(np.diagonal(pa, axis1=-2, axis2=-1))  # within-bin overlaps (G, K)
    # Xt[i, k]: mean overlap of a key in bin k with the keys of row bin i, (V p)_ik
    Xt = np.matmul(V, pa)
    dV = tall_matmul(dg, V.T)  # mean within-bin overlap over each row's keys
    qbar = tall_matmul(qa, V.T)
    if KEY_PREFERENCE:  # only the diagonal of V p Vᵀ is needed before the key weights
        Mdiag = np.einsum("ik,gik->gi", V, Xt)
    else:
        M = np.matmul(Xt, np.ascontiguousarray(V.T))  # V p Vᵀ (G, K, K)
        Mdiag = np.diagonal(M, axis1=-2, axis2=-1)
    pown = (Mdiag - inv_n * dV) / np.where(one, 1.0, 1.0 - inv_n)
    pown = np.where(one, qbar, pown)
    gap = np.maximum(qbar - pown, 0.0)
    spread_ = gap if cbar is None else np.maximum(qbar - cbar * pown, 0.0)
    b = bt[:, None] * np.sqrt(qa * spread_)  # effective β of each row bin (G, K)
    if KEY_PREFERENCE:
        q_same = float(qa[0, 0]) if np.all(qa == qa[:1, :1]) else None
        W = _key_weights(V, Xt, qa, pown, gap, b, geo, q_same)  # overwrites Xt
        M = np.matmul(np.matmul(W, pa), np.ascontiguousarray(W.transpose(0, 2, 1)))
        dq = np.matmul(W, np.stack([dg, qa], axis=-1))  # W d and W q in one product
        dV, qbar = dq[:, :, 0], dq[:, :, 1]
        pown = (np.diagonal(M, axis1=-2, axis2=-1) - inv_n * dV) / np.where(one, 1.0, 1.0 - inv_n)
        pown = np.where(one, qbar, pown)
        gap = np.maximum(qbar - pown, 0.0)
    return qbar, pown, gap, b, M, dV


def _row_statistics(b, c_lo, c_hi, geo: rows.RowGeometry, finite_T: bool, want_entropy: bool):
    """Bin means of Y²_t (exact 1/n part), entropy / ln n, and the REM excess overlap ``ov_t − 1/n_t`` of
    each row bin as a line in the query cosine, ``e0 + e1 c`` (``(G, K)`` each); the tables of all bins'
    key counts are read in one vectorised pass (:func:`sigprop.theory.rows.bin_tables`)."""
    G, K = b.shape
    T = float(geo.seq_len)
    inv_n = geo.inv_n
    y2 = np.ones((G, K))  # a row that sees one key: A = 1
    ent: Any = np.zeros((G, K)) if want_entropy else None
    # the excess of row bin i against bin j is affine in the query cosine: e0_i + e1_i c_ij
    e0: Any = np.zeros((G, K)) if finite_T else None
    e1: Any = np.zeros((G, K)) if finite_T else None
    live = geo.n >= 2
    if finite_T:  # uniform rows (b = 0 at every point): Y² = ov = 1/n exactly, no table needed
        uniform = live & ~np.any(b, axis=0)
        y2[:, uniform] = inv_n[uniform]
        if want_entropy:
            ent[:, uniform] = 1.0
        live &= ~uniform
    cols = np.flatnonzero(live)
    if cols.size == 0:
        return y2, ent, e0, e1
    full = cols.size == K
    n = geo.n[cols]
    bl = b if full else b[:, cols]
    bn = bl * rows.row_beta_scale(n, T)  # each row's effective β relative to its own n keys
    if finite_T:
        tab = rows.bin_tables(n)
        y = tab.y2(bn)
        y2[:, cols] = y - (1.0 / n - inv_n[cols])  # bin mean: exact 1/n part
        if not full:  # c_lo, c_hi: each row's smallest and largest query cosine
            c_lo, c_hi = c_lo[:, cols], c_hi[:, cols]
        e0[:, cols], e1[:, cols] = _excess_overlap_line(bn, y, c_lo, c_hi, tab)
    else:
        y2[:, cols] = rows.asymptotic_y2(bn)
    if want_entropy:
        for k, i in enumerate(cols):
            ent[:, i] = rows.row_stats(bl[:, k], float(n[k]), T, finite_T=finite_T, entropy=True,
                                       table=True).entropy
    return y2, ent, e0, e1


def _key_weights(V, Xt, qa, pown, gap, b, geo, q_same: float | None = None) -> np.ndarray:
    """Attention mass per key bin of each row bin (``(G, K, K)``, ``[g, i, k]`` row bin i, key bin k; rows
    sum to 1), when keys differ in their distance from the keys' centroid.

    A key s of row t has logit variance (about the row mean) ∝ g_s = q_s − 2 m_s + p̄_t, with m_s its mean
    overlap with the row's keys (``Xt[g, i, k]``); the mean of g over the keys is q̄ − p̄. Its mean Gibbs
    weight relative to a key at the mean is exp(λ (g_s/ḡ − 1)): λ = s²/2 below the REM transition
    (annealed, E e^{a}) and λ = ln n above it (the largest of n Gaussians: a key with variance g beats the
    typical maximum with probability ≈ n^{1 − ḡ/g} ≈ n^{g/ḡ − 1}). ``q_same``: the q of every key when
    all are equal (after a LayerNorm; one pass fewer).
    """
    T = float(geo.seq_len)
    n = np.maximum(geo.n, 1.0)
    lam = 0.5 * np.minimum(b * b * math.log(T), 2.0 * np.log(n))  # (G, K) per row bin
    # z = λ (g/ḡ − 1) = r (q_k − 2 Xt_ik) + (r p̄_i − λ) with r = λ/ḡ, built in place in Xt's buffer
    with np.errstate(divide="ignore", invalid="ignore"):
        r = lam / np.where(gap > 0, gap, 1.0)  # λ/ḡ per row bin
    z = Xt  # Xt is not needed after the weights: reuse its buffer
    if q_same is None:
        z *= -2.0
        z += qa[:, None, :]
        z *= r[:, :, None]
        z += (r * pown - lam)[:, :, None]
    else:  # the same q at every key: z = −2 r Xt + (r (q + p̄) − λ)
        z *= (-2.0 * r)[:, :, None]
        z += (r * (q_same + pown) - lam)[:, :, None]
    np.clip(z, -30.0, 30.0, out=z)
    np.exp(z, out=z)
    z *= V
    z /= np.matmul(z, np.ones(z.shape[-1]))[:, :, None]
    return z


def _excess_overlap_line(b, y2, lo, hi, tab) -> tuple[np.ndarray, np.ndarray]:
    """``ov(c) − 1/n ≈ e0 + e1 c`` for the row bins, ``(G, K)`` each (``b``: the rows' own effective β,
    ``y2``: Y² there; ``tab`` the bins' :class:`sigprop.theory.finite.StackedTables`).

    Two table reads per grid point and bin, at the smallest and largest query cosine ``lo``, ``hi`` of the
    row, and linear interpolation in c between them (the overlap is smooth and monotone in c; exact at
    both ends).
    """
    e_lo, e_hi = tab.overlap(b, (lo, hi), y2)
    e_lo -= tab.inv_n
    e_hi -= tab.inv_n
    span = hi - lo
    slope = np.where(span > 1e-12, (e_hi - e_lo) / np.where(span > 1e-12, span, 1.0), 0.0)
    return e_lo - slope * lo, slope


# --------------------------------------------------------------------------- the other pieces


def value(q, p, sigma_v2, sigma_bv2) -> tuple[np.ndarray, np.ndarray]:
    """``v = x W_V + b_V`` with ``W_V ~ N(0, σ_v²/d)``, ``b_V ~ N(0, σ_bv²)``: ``(σ_v² q + σ_bv², σ_v² p + σ_bv²)``."""
    return sigma_v2 * np.asarray(q) + sigma_bv2, sigma_v2 * np.asarray(p) + sigma_bv2


def residual(skip_q, skip_p, branch_q, branch_p, alpha) -> tuple[np.ndarray, np.ndarray]:
    """``α · skip + branch``; skip and branch add in quadrature (cross term zero through a random W)."""
    a2 = np.asarray(alpha, dtype=float) ** 2
    return a2 * skip_q + branch_q, a2 * skip_p + branch_p


def layernorm(q, p) -> tuple[np.ndarray, np.ndarray]:
    """LayerNorm (or RMSNorm) without affine parameters: ``(q, p) → (1, p/q)``.

    LayerNorm's mean subtraction and RMSNorm's lack of it differ by O(1/d) (the mean of a token's d
    coordinates is O(1/sqrt(d))), so both use this map. q is returned as a 0-d array (it broadcasts),
    which lets the MLP use one kernel table for the grid.
    """
    return np.asarray(1.0), cosine(p, q)


def layernorm_positions(q, p) -> tuple[np.ndarray, np.ndarray]:
    """Per-position LayerNorm of a per-position state: ``q_t → 1``, ``p_tτ → p_tτ / sqrt(q_t q_τ)``."""
    q = np.asarray(q, dtype=float)
    if q.ndim == 0:  # the same q at every position
        return np.asarray(1.0), cosine(p, q)
    if not np.all(q > 0):  # zero tokens read as identical (cosine 1), as in :func:`cosine`
        sq = np.sqrt(np.maximum(q, 0.0))
        return np.asarray(1.0), cosine(p, sq[..., :, None] * sq[..., None, :])
    inv = 1.0 / np.sqrt(q)
    c = p * inv[..., :, None]
    c *= inv[..., None, :]
    return np.asarray(1.0), np.clip(c, 0.0, 1.0, out=c)


def mlp(q, p, activation, sigma_w2, sigma_b2, sigma_w2_out=None) -> tuple[np.ndarray, np.ndarray]:
    """``W₂ φ(W₁ x + b₁) + b₂`` with ``W₁ ~ N(0, σ_w²/d)``, ``W₂ ~ N(0, σ_w,out²/d_ff)``, biases ``N(0, σ_b²)``.

    Gated activations (``swiglu``, ``geglu``) use the product kernel of
    :func:`sigprop.theory.activations.mlp_map`. For a plain activation ``σ_w,out²`` rescales the
    kernel part of the output: ``σ_b² + σ_w,out² E[φφ]``.
    """
    if isinstance(activation, str) and activation in GATED:
        return activations.mlp_map(activation, q, p, sigma_w2, sigma_b2, sigma_w2_out=sigma_w2_out)
    qo, po = activations.mlp_map(activation, q, p, sigma_w2, sigma_b2)
    if sigma_w2_out is None:
        return qo, po
    r = np.asarray(sigma_w2_out, dtype=float) / np.asarray(sigma_w2, dtype=float)
    return sigma_b2 + r * (qo - sigma_b2), sigma_b2 + r * (po - sigma_b2)


@dataclass(frozen=True)
class BlockOut:
    """State after one block, plus what the block's attention saw (for diagrams and reports)."""

    q: np.ndarray
    p: np.ndarray
    attn: AttentionOut


def rope_cbar(spec) -> float | None:
    """RoPE's c̄ of ``spec`` (:func:`sigprop.theory.rope.cbar`), ``None`` without RoPE.

    c̄ = average over key pairs of ``(1 − f) + f mean_i cos(θ_i Δ)``; the within-row logit variance
    becomes ``β² ln T q (q − c̄ p)`` (docs/theory.md §3).
    """
    if not spec.rope_fraction:
        return None
    import importlib

    rope = importlib.import_module("sigprop.theory.rope")
    return float(rope.cbar(spec.rope_fraction, spec.rope_theta, spec.width // spec.heads, spec.seq_len,
                           causal=spec.causal))


def block(q, p, spec, *, finite_T: bool = True, scale=1.0, want_entropy: bool = True) -> BlockOut:
    """One transformer block of ``spec`` on a uniform state (q, p), following ``spec.recipe(spec)``.

    Every sublayer is ``x ← N_out(α x + Σ_b F_b(N_in x))`` (docs/theory.md §3): post-LN
    ``x ← LN(α_SA x + V(A(x)))``, ``x ← LN(α_MLP x + MLP(x))``; pre-LN ``x ← α_SA x + V(A(LN x))``,
    ``x ← α_MLP x + MLP(LN x)`` (the attention β_c is evaluated on ``LN x``, docs/theory.md §3.5); parallel
    pre-LN ``x ← α_SA x + V(A(LN₁ x)) + MLP(LN₂ x)``. Branches add in quadrature. The value bias cancels in
    centred attention (``Σ_s (A_ts − 1/n) = 0``).

    A causal spec is resolved per position (:func:`block_positions`); this function feeds it the uniform
    state and returns the all-token means.

    ``scale``: the pre-LN residual stream is stored as ``(q, p)/scale`` so that it stays finite when it
    grows like α^{2L}; branch outputs are divided by it (post-LN ignores it: its state is normalised).
    """
    if spec.causal:
        geo = rows.geometry(spec.seq_len, True, spec.window)
        out = block_positions(*spread(q, p, geo), spec, geo, finite_T=finite_T, scale=scale,
                              want_entropy=want_entropy)
        qm, pm = all_tokens(out.q, out.p, geo)
        return BlockOut(qm, pm, out.attn)
    return _block(q, p, spec, None, finite_T, scale, want_entropy)


def block_positions(q, p, spec, geo: rows.RowGeometry, *, finite_T: bool = True, scale=1.0,
                    want_entropy: bool = True) -> BlockOut:
    """One block of a causal ``spec`` on a per-position state ``q`` ``(..., K)``, ``p`` ``(..., K, K)``.

    ``p`` is symmetric, so outside the attention (value, residual, LayerNorm, MLP) it is carried as its
    upper triangle, ``K(K+1)/2`` pairs (:func:`pack_pairs`): the same maps on half the numbers. The
    returned ``attn.p`` is packed in the same way (:func:`unpack_pairs`). With :data:`PACK_PAIRS` off
    every pair map runs on the full ``(..., K, K)`` arrays (the straightforward form; same results).
    """
    if PACK_PAIRS:
        return _block_packed(q, p, spec, geo, finite_T, scale, want_entropy)
    return _block(q, p, spec, geo, finite_T, scale, want_entropy)


#: carry the symmetric pair state of a causal block as its upper triangle (False: full K × K arrays)
PACK_PAIRS = True


@functools.lru_cache(maxsize=16)
def _pack_index(K: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Flat indices of the upper triangle (i ≤ j) of a K × K matrix, its row and column bins, and for each
    of the K² entries the packed index of (min(i, j), max(i, j))."""
    iu, ju = np.triu_indices(K)
    pos = np.empty((K, K), dtype=np.intp)
    pos[iu, ju] = np.arange(iu.size)
    pos[ju, iu] = pos[iu, ju]
    return iu * K + ju, iu, ju, pos.ravel()


def _pack_lower(x: np.ndarray) -> np.ndarray:
    """``x_i`` of the row bin i of each packed pair (i ≤ j): ``(..., K)`` → ``(..., K(K+1)/2)`` (a repeat,
    faster than the equivalent ``take``)."""
    K = x.shape[-1]
    return np.repeat(x, np.arange(K, 0, -1), axis=-1)


def _pack_upper(x: np.ndarray) -> np.ndarray:
    """``x_j`` of the column bin j of each packed pair (i ≤ j): ``(..., K)`` → ``(..., K(K+1)/2)``."""
    return np.concatenate([x[..., i:] for i in range(x.shape[-1])], axis=-1)


def pack_pairs(p: np.ndarray) -> np.ndarray:
    """Upper triangle ``(..., K(K+1)/2)`` of symmetric per-pair arrays ``(..., K, K)``."""
    K = p.shape[-1]
    return np.take(p.reshape(*p.shape[:-2], K * K), _pack_index(K)[0], axis=-1)


def unpack_pairs(pk: np.ndarray, K: int) -> np.ndarray:
    """The symmetric ``(..., K, K)`` arrays of packed pairs (inverse of :func:`pack_pairs`)."""
    return np.take(pk, _pack_index(K)[3], axis=-1).reshape(*pk.shape[:-1], K, K)


def _layernorm_packed(q, pk, K: int):
    """:func:`layernorm_positions` of a packed state."""
    q = np.asarray(q, dtype=float)
    if q.ndim == 0 or (K > 1 and q.shape[-1] == 1):  # the same q at every position
        return np.asarray(1.0), cosine(pk, q)
    if not np.all(q > 0):  # zero tokens read as identical (cosine 1), as in :func:`cosine`
        sq = np.sqrt(np.maximum(q, 0.0))
        return np.asarray(1.0), cosine(pk, _pack_lower(sq) * _pack_upper(sq))
    inv = 1.0 / np.sqrt(q)
    c = pk * _pack_lower(inv)
    c *= _pack_upper(inv)
    return np.asarray(1.0), np.clip(c, 0.0, 1.0, out=c)


def _block_packed(q, p, spec, geo, finite_T: bool, scale, want_entropy: bool) -> BlockOut:
    """:func:`_block` of a per-position state with the pairs packed outside the attention."""
    K = geo.size
    p = np.asarray(p, dtype=float)
    full, pk = p, pack_pairs(p)  # ``full``: the unpacked form of ``pk`` while it is still valid
    one = functools.partial(_axes, k=1)  # grid parameters against (..., K) and (..., K(K+1)/2) alike
    pre = spec.norm == "pre"
    cbar = rope_cbar(spec)
    att = None
    for sub in spec_recipe(spec):
        if sub.norm_in:
            qn, pn = _layernorm_packed(q, pk, K)
            fn = None
        else:
            qn, pn, fn = q, pk, full
        bq = bp = None
        for kind in sub.branches:
            if kind == "attn":
                qa = np.asarray(qn, dtype=float)
                if qa.ndim == 0 or qa.shape[-1:] != (K,):
                    qa = np.broadcast_to(qa[..., None], (*qa.shape, K))
                pa = unpack_pairs(pn, K) if fn is None else fn
                att = causal_attention(qa, pa, spec.beta, geo, kind=spec.attention, finite_T=finite_T,
                                       want_entropy=want_entropy, cbar=cbar, packed=True, pk=pn)
                bias_v = 0.0 if spec.attention == "centred" else spec.bias_v2
                xq = one(spec.sigma_v2) * att.q + one(bias_v)
                xp = att.p * one(spec.sigma_v2)
                xp += one(bias_v)
            elif np.ndim(qn) == 0:  # after a LayerNorm: one q for every position
                xq, xp = mlp(qn, pn, spec.activation, one(spec.sigma_w2), one(spec.sigma_b2),
                             None if spec.sigma_w2_out is None else one(spec.sigma_w2_out))
                if np.ndim(xq) and np.shape(xq)[-1] != 1:  # K₁₁ broadcast over the pairs: one per point
                    xq = np.asarray(xq)[..., :1]
            else:  # per-position q (no LayerNorm before the MLP): the pair form of the unpacked state
                two = functools.partial(_axes, k=2)
                xq, xpf = mlp(qn, unpack_pairs(pn, K), spec.activation, two(spec.sigma_w2), two(spec.sigma_b2),
                              None if spec.sigma_w2_out is None else two(spec.sigma_w2_out))
                xq = np.asarray(xq)[..., 0] if np.ndim(xq) >= 2 else xq
                xp = pack_pairs(np.broadcast_to(xpf, np.broadcast_shapes(np.shape(xpf), (K, K))))
            if pre:
                xq, xp = xq / one(scale), xp / one(scale)
            bq, bp = (xq, xp) if bq is None else (bq + xq, bp + xp)
        a2 = one(np.asarray(getattr(spec, sub.alpha), dtype=float) ** 2)
        q = a2 * q + bq
        pk = a2 * pk + bp
        full = None
        if sub.norm_out:
            q, pk = _layernorm_packed(q, pk, K)
    assert att is not None  # every recipe has an attention branch
    return BlockOut(q, unpack_pairs(np.asarray(pk, dtype=float), K), att)


def _block(q, p, spec, geo, finite_T: bool, scale, want_entropy: bool) -> BlockOut:
    """The recipe loop shared by the uniform (``geo=None``) and per-position states."""
    pos = geo is not None
    one, two = (lambda x: _axes(x, 1), lambda x: _axes(x, 2)) if pos else (lambda x: x, lambda x: x)
    norm = layernorm_positions if pos else layernorm
    pre = spec.norm == "pre"
    cbar = rope_cbar(spec)
    att = None
    for sub in spec_recipe(spec):
        qn, pn = norm(q, p) if sub.norm_in else (q, p)
        bq = bp = None
        for kind in sub.branches:
            if kind == "attn":
                qa, pa = np.asarray(qn, dtype=float), np.asarray(pn, dtype=float)
                if pos:
                    if qa.ndim == 0 or qa.shape[-1:] != (geo.size,):
                        qa = np.broadcast_to(qa[..., None], (*qa.shape, geo.size))
                    att = causal_attention(qa, pa, spec.beta, geo, kind=spec.attention, finite_T=finite_T,
                                           want_entropy=want_entropy, cbar=cbar)
                else:
                    att = _attention(qa, pa, spec.beta, spec.seq_len, spec.attention, finite_T, want_entropy,
                                     window=spec.window, cbar=cbar)
                bias_v = 0.0 if spec.attention == "centred" else spec.bias_v2
                if pos:
                    xq = one(spec.sigma_v2) * att.q + one(bias_v)
                    xp = two(spec.sigma_v2) * att.p + two(bias_v)
                else:
                    xq, xp = value(att.q, att.p, spec.sigma_v2, bias_v)
            else:
                xq, xp = mlp(qn, pn, spec.activation, two(spec.sigma_w2), two(spec.sigma_b2),
                             None if spec.sigma_w2_out is None else two(spec.sigma_w2_out))
                if pos:
                    xq = np.asarray(xq)[..., 0] if np.ndim(xq) >= 2 else xq
            if pre:
                xq, xp = xq / one(scale), xp / two(scale)
            bq, bp = (xq, xp) if bq is None else (bq + xq, bp + xp)
        alpha = getattr(spec, sub.alpha)
        if pos:
            a2 = np.asarray(alpha, dtype=float) ** 2
            q, p = one(a2) * q + bq, two(a2) * p + bp
        else:
            q, p = residual(q, p, bq, bp, alpha)
        if sub.norm_out:
            q, p = norm(q, p)
    assert att is not None  # every recipe has an attention branch
    return BlockOut(q, p, att)


def _axes(x, k: int):
    """Append ``k`` singleton axes to an array parameter (scalars pass through)."""
    if np.ndim(x) == 0:
        return x
    x = np.asarray(x)
    return x.reshape(x.shape + (1,) * k)
