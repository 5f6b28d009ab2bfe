"""Rotary position embeddings (RoPE) in the attention map: the key-pair overlap factor c̄.

With RoPE a query at position t and a key at position s meet as ``q_tᵀ R(s − t) k_s / sqrt(d_h)``, where
``R(Δ)`` rotates the first ``r = f·d_h`` dimensions of a head in pairs (HuggingFace ``rotate_half``: dimension
``j`` with ``j + r/2``) by the angles ``θ_i Δ``, ``θ_i = θ^{-2i/r}`` for ``i = 0 … r/2 − 1``, and leaves the
other ``d_h − r`` dimensions alone. Averaging over random ``W_K``, two keys s, s' of one row have logit
covariance ``σ_a² p · c(s − s')`` instead of ``σ_a² p``, with

    c(Δ) = tr R(Δ) / d_h = (1 − f) + f · mean_i cos(θ_i Δ),     f = r / d_h,

and ``c(0) = 1``. The within-row logit variance of the REM (docs/theory.md §2, Giorlandino & Goldt
arXiv 2505.24333) therefore becomes ``β² ln T · q (q − c̄ p)`` instead of ``β² ln T · q (q − p)``, where c̄ is
the average of ``c(s − s')`` over the ordered pairs of distinct keys ``s ≠ s'`` that a row sees.

For a row of n consecutive keys the pair sum has a closed form (the Fejér kernel):
``Σ_{s≠s'} cos(ω (s − s')) = sin²(nω/2) / sin²(ω/2) − n``, so

    c̄(n) = (1 − f) + f · mean_i [sin²(nθ_i/2) / sin²(θ_i/2) − n] / (n (n − 1)),

which costs O(r) per row length instead of O(n²). Every row sees consecutive keys, so only its length
matters: causal rows see ``n_t = t`` keys (``min(t, W)`` with a sliding window W); non-causal rows see all T,
or with a window the band ``−⌊(W−1)/2⌋ ≤ s − t ≤ ⌈(W−1)/2⌉`` cut at the sequence ends (the torch twin's
band). :func:`cbar_rows` gives c̄ per row and :func:`cbar` the mean over the rows.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from sigprop.spec import rope_dims

#: rows × frequencies evaluated at once in :func:`cbar_rows` (bounds the memory of long sequences)
_CHUNK = 1 << 20


def _check(rope_fraction: float, rope_theta: float, head_dim: int, seq_len: int, window: int | None) -> None:
    if isinstance(rope_fraction, bool) or not (0.0 <= float(rope_fraction) <= 1.0):
        raise ValueError(f"rope_fraction must be a number in [0, 1]; got {rope_fraction!r}")
    if not (math.isfinite(float(rope_theta)) and float(rope_theta) >= 1.0):
        raise ValueError(f"rope_theta must be a finite number ≥ 1; got {rope_theta!r}")
    for name, v, lo in (("head_dim", head_dim, 1), ("seq_len", seq_len, 2)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or int(v) < lo:
            raise ValueError(f"{name} must be an integer ≥ {lo}; got {v!r}")
    if window is not None and (isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1):
        raise ValueError(f"window must be an integer ≥ 1 or None; got {window!r}")


def rotary_dims(rope_fraction: float, head_dim: int) -> int:
    """r, the number of rotated dimensions of a head: :func:`sigprop.spec.rope_dims` (the one rule)."""
    return rope_dims(head_dim, rope_fraction)


def frequencies(rope_fraction: float, rope_theta: float, head_dim: int) -> np.ndarray:
    """The rotation frequencies ``θ_i = θ^{-2i/r}``, ``i = 0 … r/2 − 1`` (empty when nothing is rotated)."""
    r = rotary_dims(rope_fraction, head_dim)
    return float(rope_theta) ** (-np.arange(0, r, 2, dtype=float) / max(r, 1))


def key_overlap(delta, rope_fraction: float, rope_theta: float, head_dim: int) -> np.ndarray:
    """``c(Δ) = (1 − f) + f · mean_i cos(θ_i Δ)`` for key distances Δ (any array shape), f = r/d_h."""
    _check(rope_fraction, rope_theta, head_dim, 2, None)
    freqs = frequencies(rope_fraction, rope_theta, head_dim)
    d = np.asarray(delta, dtype=float)
    if freqs.size == 0:
        return np.ones_like(d)
    f = 2 * freqs.size / head_dim
    return (1.0 - f) + f * np.cos(d[..., None] * freqs).mean(axis=-1)


def _pair_mean(n: np.ndarray, freqs: np.ndarray, f: float) -> np.ndarray:
    """c̄(n) for row lengths ``n ≥ 2`` (1-D int array): the Fejér-kernel closed form, in chunks of rows."""
    out = np.empty(n.shape, dtype=float)
    s2 = np.sin(0.5 * freqs) ** 2  # > 0: every θ_i lies in (0, 1]
    step = max(1, _CHUNK // max(freqs.size, 1))
    for lo in range(0, n.size, step):
        nn = n[lo:lo + step].astype(float)[:, None]
        fejer = np.sin(0.5 * nn * freqs) ** 2 / s2  # Σ_{s,s'} cos(θ_i (s − s')) over an n-key row
        pair = (fejer - nn) / (nn * (nn - 1.0))  # the diagonal s = s' removed, mean over ordered pairs
        out[lo:lo + step] = (1.0 - f) + f * pair.mean(axis=-1)
    return out


def row_lengths(seq_len: int, *, causal: bool, window: int | None = None) -> np.ndarray:
    """n_t, the number of (consecutive) keys row ``t = 1 … T`` sees: causal ``min(t, W)``; non-causal T, or
    with a window the band ``−⌊(W−1)/2⌋ ≤ s − t ≤ ⌈(W−1)/2⌉`` cut at the ends of the sequence."""
    t = np.arange(seq_len)
    if window is None:
        return t + 1 if causal else np.full(seq_len, seq_len)
    if causal:
        return np.minimum(t + 1, window)
    left = (window - 1) // 2
    return np.minimum(t + (window - 1 - left), seq_len - 1) - np.maximum(t - left, 0) + 1


@lru_cache(maxsize=256)
def _cbar_rows_cached(rope_fraction: float, rope_theta: float, head_dim: int, seq_len: int,
                      window: int | None, causal: bool) -> np.ndarray:
    freqs = frequencies(rope_fraction, rope_theta, head_dim)
    n = row_lengths(seq_len, causal=causal, window=window)
    out = np.ones(seq_len, dtype=float)
    if freqs.size:
        f = 2 * freqs.size / head_dim
        m = int(n.max())  # row lengths 2 … m occur; compute each once, then spread to the rows
        if m >= 2:
            by_len = _pair_mean(np.arange(2, m + 1), freqs, f)
            sel = n >= 2
            out[sel] = by_len[n[sel] - 2]
    out.setflags(write=False)
    return out


def cbar_rows(rope_fraction: float, rope_theta: float, head_dim: int, seq_len: int,
              window: int | None = None, *, causal: bool = True) -> np.ndarray:
    """c̄_t of the rows ``t = 1 … T`` (:func:`row_lengths` keys each; default: causal rows, row t sees the
    ``min(t, W)`` keys up to itself); ``c̄ = 1`` for a row with a single key (it has no pair). Read-only and
    cached."""
    _check(rope_fraction, rope_theta, head_dim, seq_len, window)
    return _cbar_rows_cached(float(rope_fraction), float(rope_theta), int(head_dim), int(seq_len),
                             None if window is None else int(window), bool(causal))


@lru_cache(maxsize=1024)
def _cbar_cached(rope_fraction: float, rope_theta: float, head_dim: int, seq_len: int) -> float:
    freqs = frequencies(rope_fraction, rope_theta, head_dim)
    if freqs.size == 0:
        return 1.0
    return float(_pair_mean(np.array([seq_len]), freqs, 2 * freqs.size / head_dim)[0])


def cbar(rope_fraction: float, rope_theta: float, head_dim: int, seq_len: int, causal: bool = False,
         window: int | None = None) -> float:
    """The RoPE overlap factor c̄: the within-row logit variance is ``β² ln T · q (q − c̄ p)``.

    Non-causal without a window: the average of ``c(s − s')`` over the ordered pairs of distinct keys of one
    row of ``seq_len`` = T keys. Otherwise (causal rows, or a window W): the mean of :func:`cbar_rows` over
    the rows that have a pair (``n_t ≥ 2``). ``rope_fraction = 0`` gives 1 (no rotation: the usual
    ``q (q − p)``). Example: ``cbar(1, 1e4, 64, 256) ≈ 0.48``.
    """
    _check(rope_fraction, rope_theta, head_dim, seq_len, window)
    if not causal and (window is None or window >= 2 * seq_len):  # every row sees all T keys
        return _cbar_cached(float(rope_fraction), float(rope_theta), int(head_dim), int(seq_len))
    args = (float(rope_fraction), float(rope_theta), int(head_dim), int(seq_len))
    w = None if window is None else int(window)
    rows = _cbar_rows_cached(*args, w, bool(causal))
    paired = row_lengths(int(seq_len), causal=bool(causal), window=w) >= 2
    return float(rows[paired].mean()) if paired.any() else 1.0
