"""Attention rows: which keys each query row sees, and the REM statistics of such rows (docs/theory.md §2, §7).

This is the one place where the T = ∞ / finite-T / causal / sliding-window switch lives; :mod:`rem`,
:mod:`blocks` and :mod:`gradients` all call it.

* :func:`row_stats` — REM statistics (Y^(k), E[(Σ A²)²], entropy, cross-row overlap) of rows with ``n``
  keys whose logits fluctuate with std ``s = b sqrt(ln T)`` (``b`` the effective inverse temperature,
  ``T`` the sequence length of the initialisation). ``finite_T`` selects the exact finite-n expectations
  (:mod:`sigprop.theory.finite`) or the T = ∞ 1-RSB values with the row's own effective
  ``b_n = b sqrt(ln T / ln n)`` (Parisi ``m = √2 / b_n``). A row that sees one key has ``A = 1``.
* :class:`RowGeometry` / :func:`geometry` — position bins of a causal (or windowed) layer: row t sees
  ``n_t = min(t, W)`` keys (non-causal: ``min(T, W)``), and the exact uniform-attention structure of pairs
  of rows (how many keys two rows share) averaged over bins of positions.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

SQRT2 = float(np.sqrt(2.0))

#: position bins of a causal layer: ``None`` the default scheme of :func:`causal_bins` (its representative key
#: counts have shipped finite tables); an integer ``k`` asks for ``k`` plain geometric bins over 1..T, and
#: ``k ≥ T`` for one bin per position (the exact per-position theory)
CAUSAL_POSITIONS: int | None = None
#: the "last tokens" over which :attr:`Propagation.rho_last` is taken (arXiv 2505.24333 Fig 12: 50)
LAST_TOKENS = 50
#: default bins: rows 1..SINGLE_ROWS each alone; then bins whose edges are evenly spaced in (ln t)^BIN_POWER,
#: as many as a geometric split with ratio BIN_RATIO would need, up to the last LAST_TOKENS tokens; those in
#: at least LAST_BINS geometric bins of ratio ≤ LAST_RATIO (so the last-token means are exact bin sums).
#: Binning error of ρ and ρ_last < 0.005 at T = 64 … 4096 (docs/theory.md §7)
SINGLE_ROWS = 3
#: default bins up to this T: one per position (the scheme would merge few rows there anyway)
EXACT_UP_TO = 32
BIN_RATIO = 1.6
BIN_POWER = 1.5
LAST_RATIO = 1.1
LAST_BINS = 2
#: largest number of sampled positions per bin when the pair structure is averaged (exact below)
_MAX_SAMPLES = 512


def parisi_m(b) -> np.ndarray:
    """1-RSB Parisi parameter ``m = β_c/β = √2/b`` clipped to [0, 1] (1 in the replica-symmetric phase)."""
    b = np.asarray(b, dtype=float)
    with np.errstate(divide="ignore"):
        m = np.where(b > 0, SQRT2 / np.where(b > 0, b, 1.0), np.inf)
    return np.clip(m, 0.0, 1.0)


@dataclass(frozen=True)
class RowStats:
    """REM statistics of attention rows (arrays; ``None`` where not requested).

    ``y2, y3, y4`` : ``Y^(k) = E Σ_s A_s^k``; ``y2_sq`` : ``E[(Σ_s A_s²)²]``; ``entropy`` : Shannon entropy
    / ln n (0 for one key); ``overlap`` : ``E Σ_s A_ts A_τs`` of two rows with logit correlation ρ and the
    same n keys (0 at T = ∞); ``log_z`` : ``E ln Z`` in nats (finite T with ``moments``).
    """

    y2: np.ndarray
    # the others are arrays, or None where not requested
    y3: Any = None
    y4: Any = None
    y2_sq: Any = None
    entropy: Any = None
    overlap: Any = None
    log_z: Any = None

    @property
    def trace_j2(self) -> np.ndarray:
        """``E tr J² = Y² − 2 Y³ + E[(Σ A²)²]`` with ``J = diag(A) − A Aᵀ`` (clipped at 0)."""
        return np.maximum(self.y2 - 2.0 * self.y3 + self.y2_sq, 0.0)

    @property
    def one_minus_y2_sq(self) -> np.ndarray:
        """``E (1 − Σ_s A_s²)²``."""
        return np.maximum(1.0 - 2.0 * self.y2 + self.y2_sq, 0.0)


def row_stats(b, n, seq_len, *, finite_T: bool = True, rho=None, moments: bool = False,
              entropy: bool = False, table: bool = False) -> RowStats:
    """REM statistics of rows with ``n`` keys and logit std ``s = b sqrt(ln T)`` (T = ``seq_len``).

    Parameters
    ----------
    b : effective inverse temperature ``β sqrt(q (q − p))`` relative to T (array).
    n : number of keys of the rows (scalar, or an array broadcasting with ``b``); ``None`` means ``n = T``.
    seq_len : T of the initialisation, ``None`` for the T = ∞ theory (then ``n`` is ignored).
    finite_T : exact finite-n expectations (needs ``seq_len``) or the T = ∞ 1-RSB values.
    rho : if given, also the cross-row overlap for logit correlation ρ.
    moments : also Y³, Y⁴ and E[(Σ A²)²]; ``entropy`` : also the entropy / ln n.
    table : always read the finite-T tables (a few points would otherwise be integrated directly).

    Inputs are not checked (callers validate once).
    """
    b = np.asarray(b, dtype=float)
    if seq_len is None:
        finite_T = False
    elif np.ndim(seq_len) and n is None:  # several T: one call per distinct T
        return _per_value(b, seq_len, rho, lambda bb, t, rr: row_stats(
            bb, None, float(t), finite_T=finite_T, rho=rr, moments=moments, entropy=entropy, table=table),
            _wanted(rho is not None, moments, entropy, finite_T))
    same_n = n is None or (np.ndim(n) == 0 and seq_len is not None and float(n) == float(seq_len))
    if same_n:
        return _stats_one_n(b, None if seq_len is None else float(seq_len), finite_T, rho, moments, entropy, table)
    n = np.asarray(n, dtype=float)
    if n.ndim == 0:
        nk = float(n)
        if nk < 2:
            return _one_key(np.shape(b), rho is not None, moments, entropy)
        bn = b * math.sqrt(math.log(float(seq_len)) / math.log(nk))
        return _stats_one_n(bn, nk, finite_T, rho, moments, entropy, table)
    # several key counts: one table per distinct n
    return _per_value(b, n, rho, lambda bb, nk, rr: row_stats(
        bb, float(nk), seq_len, finite_T=finite_T, rho=rr, moments=moments, entropy=entropy, table=table),
        _wanted(rho is not None, moments, entropy, finite_T and False))


def bin_tables(ns):
    """The finite-T tables of the key counts ``ns`` of a layer's row bins, read side by side
    (:class:`sigprop.theory.finite.StackedTables`; cached)."""
    from sigprop.theory import finite

    return finite.stacked_tables(tuple(float(n) for n in ns))


def row_beta_scale(ns, seq_len) -> np.ndarray:
    """``sqrt(ln T / ln n)`` per key count ``n ≥ 2``: a row with n keys and logit std ``b sqrt(ln T)`` has
    effective β ``b_n = b sqrt(ln T / ln n)`` relative to its own n (as in :func:`row_stats`)."""
    T = float(seq_len)
    return np.array([1.0 if float(n) == T else math.sqrt(math.log(T) / math.log(float(n))) for n in ns])


def asymptotic_y2(b_n) -> np.ndarray:
    """T = ∞ ``Y² = 1 − m`` at the rows' own effective β ``b_n`` (:func:`row_beta_scale`)."""
    return 1.0 - parisi_m(b_n)


def _per_value(b, v, rho, call, fields) -> RowStats:
    """Evaluate ``call(b, value, rho)`` once per distinct value of the array ``v`` and reassemble."""
    shape = np.broadcast_shapes(b.shape, np.shape(v), np.shape(rho) if rho is not None else ())
    bb, vv = np.broadcast_to(b, shape), np.broadcast_to(np.asarray(v, dtype=float), shape)
    rr = np.broadcast_to(rho, shape) if rho is not None else None
    out = {f: np.empty(shape) for f in fields}
    for vk in np.unique(vv):
        sel = vv == vk
        part = call(bb[sel], vk, None if rr is None else rr[sel])
        for f in fields:
            out[f][sel] = getattr(part, f)
    return RowStats(**out)


def _wanted(overlap: bool, moments: bool, entropy: bool, log_z: bool = False) -> tuple[str, ...]:
    f = ["y2"]
    if moments:
        f += ["y3", "y4", "y2_sq"] + (["log_z"] if log_z else [])
    if entropy:
        f.append("entropy")
    if overlap:
        f.append("overlap")
    return tuple(f)


def _one_key(shape, overlap: bool, moments: bool, entropy: bool) -> RowStats:
    one = np.ones(shape)
    return RowStats(one, one if moments else None, one if moments else None, one if moments else None,
                    np.zeros(shape) if entropy else None, one if overlap else None)


def _stats_one_n(b, n, finite_T: bool, rho, moments: bool, entropy: bool, table: bool = False) -> RowStats:
    """Statistics at one key count ``n`` (``b`` already the row's own effective β for n keys)."""
    if not finite_T:
        m = parisi_m(b)
        y2 = 1.0 - m
        kw: dict = {}
        if moments:
            y4 = (3 - m) * (2 - m) * (1 - m) / 6
            kw.update(y3=(2 - m) * (1 - m) / 2, y4=y4, y2_sq=y4 + m * (1 - m) ** 2 / 6)
        if entropy:
            kw["entropy"] = np.maximum(0.0, 1.0 - 0.5 * b * b)
        if rho is not None:
            kw["overlap"] = np.zeros(np.broadcast_shapes(b.shape, np.shape(rho)))
        return RowStats(y2, **kw)
    from sigprop.theory import finite

    n1 = np.asarray(float(n))
    kw = {}
    if moments or entropy:
        mo = finite.moments_b(b, n1, table=table)
        y2 = mo.y2
        if moments:
            kw.update(y3=mo.y3, y4=mo.y4, y2_sq=mo.y4 + mo.pair22, log_z=mo.log_z)
        if entropy:
            kw["entropy"] = mo.entropy / math.log(float(n))
    else:
        y2 = finite.y2_b(b, n1, table=table)
    if rho is not None:
        kw["overlap"] = finite.overlap_b(b, np.asarray(rho, dtype=float), n1, y2, table=table)
    return RowStats(y2, **kw)


# --------------------------------------------------------------------------- row geometry


def causal_bins(seq_len: int, bins: int | None = None) -> np.ndarray:
    """Edges of the position bins of rows 1..T (bin i holds rows ``edges[i] .. edges[i+1] − 1``).

    ``bins=None`` (and :data:`CAUSAL_POSITIONS` ``None``): the default scheme — rows 1..:data:`SINGLE_ROWS`
    alone; from there to the first of the last :data:`LAST_TOKENS` tokens, ``⌈ln(a/e)/ln BIN_RATIO⌉`` bins
    with edges evenly spaced in ``(ln t)^BIN_POWER`` (somewhat finer at late positions than geometric bins);
    the last tokens in geometric bins of ratio ≤ :data:`LAST_RATIO` (at least :data:`LAST_BINS`). The bin
    count grows like ln T (15 at T = 256, 16 at T = 512, 19 at T = 2048); up to T = :data:`EXACT_UP_TO` every
    position is its own bin.
    An integer ``bins ≥ T``: one bin per position; ``bins < T``: ``bins`` plain geometric bins.
    """
    T = int(seq_len)
    bins = CAUSAL_POSITIONS if bins is None else bins
    if bins is None and T <= EXACT_UP_TO:
        bins = T
    if bins is not None:
        if bins >= T:  # one bin per position: the exact per-position theory
            return np.arange(1, T + 2, dtype=np.int64)
        return np.unique(np.round(np.geomspace(1, T + 1, bins + 1)).astype(np.int64))
    a = max(T - LAST_TOKENS + 1, 1)  # first of the last tokens: always an edge
    e = min(SINGLE_ROWS + 1, a)
    parts = [np.arange(1, e + 1, dtype=float)]
    if a > e:
        k = max(1, math.ceil(math.log(a / e) / math.log(BIN_RATIO)))
        u = np.linspace(math.log(e) ** BIN_POWER, math.log(a) ** BIN_POWER, k + 1)
        parts.append(np.exp(u ** (1.0 / BIN_POWER)))
    lo = max(a, e)
    k = max(LAST_BINS, math.ceil(math.log((T + 1) / lo) / math.log(LAST_RATIO)))
    parts.append(np.geomspace(lo, T + 1, k + 1))
    return np.unique(np.round(np.concatenate(parts)).astype(np.int64))


def causal_rows(seq_len: float, bins: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Representative numbers of visible keys ``n`` of the causal position bins, and their row weights.

    Each bin of rows ``lo..hi−1`` (:func:`causal_bins`) is represented by ``sqrt(lo (hi − 1))`` and weighted
    by the fraction of rows it holds.
    """
    T = int(round(float(seq_len)))
    edges = causal_bins(T, bins)
    lo, hi = edges[:-1], edges[1:]
    return np.sqrt(lo * (hi - 1.0)), (hi - lo) / float(T)


@dataclass(frozen=True, eq=False)
class RowGeometry:
    """Position bins of an attention layer and the uniform-attention structure of their rows.

    For rows ``t`` (query positions 1..T) grouped in bins ``B_i``: row t sees ``n_t`` keys; two rows
    t ≠ τ share ``m_tτ`` keys. Means are over positions of a bin, or over distinct pairs (t ≠ τ) of two bins:

    * ``n`` (K,) representative key count of a bin's rows, ``count`` (K,) rows per bin, ``positions``
      (K,) representative position;
    * ``inv_n`` (K,) mean 1/n_t;
    * ``vis`` (K, K): ``vis[i, k]`` = mean over t ∈ B_i of (keys of row t in B_k)/n_t (rows sum to 1);
    * ``shared`` (K, K): mean of ``m_tτ/(n_t n_τ)`` — the output overlap of uniform attention on
      orthogonal values (exactly ``1/max(t, τ)`` for a causal layer without window);
    * ``shared2`` (K, K): mean of ``m_tτ²/(n_t n_τ)`` — the weight of the REM excess overlap;
    * ``pair_w`` (K, K): fraction of all distinct ordered pairs in (B_i, B_j); ``row_w`` (K,) fraction
      of rows; ``last_row_w``, ``last_pair_w``: the same within the last :data:`LAST_TOKENS` tokens.
    """

    seq_len: int
    causal: bool
    window: int | None
    edges: np.ndarray
    n: np.ndarray
    count: np.ndarray
    positions: np.ndarray
    inv_n: np.ndarray
    vis: np.ndarray
    shared: np.ndarray
    shared2: np.ndarray
    row_w: np.ndarray
    pair_w: np.ndarray
    last_row_w: np.ndarray
    last_pair_w: np.ndarray

    @functools.cached_property
    def inv_one_minus_shared(self) -> np.ndarray:
        """``1/(1 − S)`` (1 where S = 1: a pair of rows that see one and the same key)."""
        return 1.0 / np.where(self.shared < 1.0, 1.0 - self.shared, 1.0)

    @functools.cached_property
    def entropy_w(self) -> np.ndarray:
        """Row weights for the mean normalised entropy (K,): ``row_w`` over the rows that see ≥ 2 keys (a row
        with one key has entropy 0 and ln 1 = 0: undefined, left out as the measurement leaves it out);
        ``row_w`` if no row sees two keys."""
        w = np.where(self.n >= 2, self.row_w, 0.0)
        tot = float(w.sum())
        return w / tot if tot > 0 else self.row_w

    @property
    def size(self) -> int:
        return int(self.n.size)


def _span(t, T: int, causal: bool, window: int | None):
    """First and last key of rows t: causal ``t − W < s ≤ t``; non-causal the band
    ``−⌊(W−1)/2⌋ ≤ s − t ≤ ⌈(W−1)/2⌉`` cut at the sequence ends (the torch twin's masks)."""
    t = np.asarray(t, dtype=float)
    if window is None:
        return (np.ones(t.shape), t) if causal else (np.ones(t.shape), np.full(t.shape, float(T)))
    if causal:
        return np.maximum(t - window + 1, 1.0), t
    return np.maximum(t - (window - 1) // 2, 1.0), np.minimum(t + window // 2, float(T))


def windowed(seq_len: int, causal: bool, window: int | None) -> bool:
    """Whether the window hides keys from some row (causal: W < T; non-causal band: W < 2T − 1)."""
    return window is not None and window < (seq_len if causal else 2 * seq_len - 1)


def keys_seen(t: np.ndarray, seq_len: int, causal: bool, window: int | None) -> np.ndarray:
    """Number of keys row t sees: causal ``min(t, W)``; non-causal T, or the band of :func:`_span`."""
    a, b = _span(t, int(seq_len), causal, window)
    return b - a + 1


def _shared_keys(t: np.ndarray, u: np.ndarray, causal: bool, window: int | None, T: int) -> np.ndarray:
    """Keys rows t and u (broadcasting arrays, 1-based positions) both see."""
    a_t, b_t = _span(t, T, causal, window)
    a_u, b_u = _span(u, T, causal, window)
    return np.maximum(np.minimum(b_t, b_u) - np.maximum(a_t, a_u) + 1, 0).astype(float)


def geometry(seq_len: int, causal: bool = True, window: int | None = None, bins: int | None = None) -> RowGeometry:
    """Position bins and their uniform-attention pair structure (cached); ``bins=None`` reads
    :data:`CAUSAL_POSITIONS` at call time."""
    bins = CAUSAL_POSITIONS if bins is None else bins
    return _geometry(int(seq_len), bool(causal), None if window is None else int(window),
                     None if bins is None else int(bins))


@functools.lru_cache(maxsize=64)
def _geometry(seq_len: int, causal: bool, window: int | None, bins: int | None) -> RowGeometry:
    """Position bins and their uniform-attention pair structure (cached).

    Causal layers use :func:`causal_bins` (``bins=None`` the default scheme; ``bins ≥ T`` gives one bin per
    position, the exact per-position theory). Bins with more than 512 rows are averaged over 512 evenly
    spaced rows (exact below that size; a midpoint rule of smooth functions of t above it).
    """
    T = int(seq_len)
    edges = causal_bins(T, bins) if causal else np.array([1, T + 1])
    lo, hi = edges[:-1], edges[1:]
    K = lo.size
    count = (hi - lo).astype(float)
    samples = []
    for a, c in zip(lo, hi, strict=True):
        k = c - a
        if k <= _MAX_SAMPLES:
            samples.append(np.arange(a, c, dtype=float))
        else:
            samples.append(a + (np.arange(_MAX_SAMPLES) + 0.5) * k / _MAX_SAMPLES - 0.5)
    n_t = [keys_seen(s, T, causal, window) for s in samples]
    inv_n = np.array([np.mean(1.0 / x) for x in n_t])
    rep = np.sqrt(lo * (hi - 1.0)) if causal else np.array([(T + 1) / 2.0])
    # causal: the geometric-mean row of each bin (its key count has a shipped finite table) clipped by W;
    # non-causal: a middle row (min(T, W) keys)
    n_rep = np.minimum(rep, math.inf if window is None else float(window)) if causal else np.array(
        [float(min(T, window)) if window is not None else float(T)])
    vis = np.zeros((K, K))
    shared = np.zeros((K, K))
    shared2 = np.zeros((K, K))
    for i in range(K):
        t = samples[i][:, None]
        for k in range(K):  # keys of row t in bin k: positions [lo_k, hi_k) ∩ keys(t)
            vis[i, k] = np.mean(_keys_in(t[:, 0], lo[k], hi[k], causal, window, T) / n_t[i])
        for j in range(K):
            u = samples[j][None, :]
            m = _shared_keys(t, u, causal, window, T)
            den = n_t[i][:, None] * n_t[j][None, :]
            w = np.ones(m.shape)
            if i == j:
                np.fill_diagonal(w, 0.0)
            tot = w.sum()
            if tot == 0:
                shared[i, j] = shared2[i, j] = 0.0
                continue
            shared[i, j] = float((w * m / den).sum() / tot)
            shared2[i, j] = float((w * m * m / den).sum() / tot)
    pair = np.outer(count, count) - np.diag(count)
    pair_w = pair / (T * (T - 1.0))
    row_w = count / T
    last_lo = max(T - LAST_TOKENS + 1, 1)
    in_last = np.clip(hi - np.maximum(lo, last_lo), 0, None).astype(float)
    lp = np.outer(in_last, in_last) - np.diag(in_last)
    nl = float(in_last.sum())
    last_pair_w = lp / max(nl * (nl - 1.0), 1.0)
    last_row_w = in_last / nl
    return RowGeometry(T, causal, window, edges, n_rep.astype(float), count, rep, inv_n, vis, shared, shared2,
                       row_w, pair_w, last_row_w, last_pair_w)


def _keys_in(t: np.ndarray, lo: int, hi: int, causal: bool, window: int | None, T: int) -> np.ndarray:
    """Keys of rows t that lie in positions [lo, hi)."""
    a, b = _span(t, T, causal, window)
    return np.maximum(np.minimum(b, hi - 1) - np.maximum(a, lo) + 1, 0).astype(float)
