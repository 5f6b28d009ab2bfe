"""Random Energy Model (REM) statistics of one softmax-attention row (docs/theory.md §2).

One query row ``t`` of a self-attention layer at initialisation has logits ``a_ts`` whose row-fluctuating
part is Gaussian with variance ``s² = β² ln T · q (q − p)`` (``q``: squared norm per dimension of the
tokens the attention sees, ``p``: their overlap). With ``T = e^N`` keys this is a REM at inverse
temperature β whose critical point is

    β_c(q, p) = sqrt(2 / (q (q − p)))            (= sqrt(2/(1 − ρ)) when q = 1, p = ρ).

Everything here depends on (β, q, p) only through the *effective* inverse temperature
``b = β sqrt(q (q − p))`` and, at finite T, on the number of keys. Functions are vectorised: all
arguments broadcast.

Two conventions are available everywhere:

* **asymptotic** (``seq_len=None`` / ``finite_T=False``): the paper's T → ∞ 1-RSB results;
* **finite T** (default where a sequence length is known): exact expectations over i.i.d. Gaussian
  logits with ``T`` keys from :mod:`sigprop.theory.finite` (a sigprop extension, docs/theory.md §2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from sigprop.theory import rows

SQRT2 = rows.SQRT2


def _f(x) -> np.ndarray:
    return np.asarray(x, dtype=float)


def check_nonneg(name: str, x) -> np.ndarray:
    x = _f(x)
    if np.any(~np.isfinite(x)) or np.any(x < 0):
        raise ValueError(f"{name} must be finite and ≥ 0")
    return x


def check_rho(rho) -> np.ndarray:
    rho = _f(rho)
    if np.any(~np.isfinite(rho)) or np.any(rho < 0) or np.any(rho > 1):
        raise ValueError("rho must be in [0, 1]")
    return rho


def _check_seq_len(seq_len) -> np.ndarray:
    t = _f(seq_len)
    if np.any(~np.isfinite(t)) or np.any(t < 2):
        raise ValueError("seq_len (T) must be ≥ 2")
    return t


def effective_beta(beta, rho=0.0, q=1.0) -> np.ndarray:
    """``b = β sqrt(q (q − p))`` with ``p = ρ q``: the REM inverse temperature in units where β_c = √2."""
    beta = check_nonneg("beta", beta)
    rho = check_rho(rho)
    q = check_nonneg("q", q)
    return beta * q * np.sqrt(1.0 - rho)


def beta_c(q=1.0, p=0.0) -> np.ndarray:
    """Critical β of the REM, ``sqrt(2/(q(q − p)))``; ``inf`` when ``q == p`` (identical tokens)."""
    q = _f(q)
    p = _f(p)
    if np.any(q <= 0) or np.any(p > q + 1e-12 * np.abs(q)) or np.any(~np.isfinite(q)) or np.any(~np.isfinite(p)):
        raise ValueError("beta_c needs q > 0 and p ≤ q (finite)")
    gap = np.maximum(q * (q - p), 0.0)
    with np.errstate(divide="ignore"):
        return np.sqrt(np.where(gap > 0, 2.0 / np.where(gap > 0, gap, 1.0), np.inf))


def beta_c_rho(rho) -> np.ndarray:
    """β_c(ρ) = sqrt(2/(1 − ρ)) for unit-norm tokens (q = 1, p = ρ)."""
    rho = check_rho(rho)
    return beta_c(1.0, rho)


_parisi_m = rows.parisi_m


def participation_ratio(k, beta, rho=0.0, q=1.0) -> np.ndarray:
    """T = ∞ participation ratio ``Y^(k) = E Σ_s A_s^k = Γ(k − m)/(Γ(k)Γ(1 − m))`` for β > β_c, else 0.

    ``m = β_c/β`` is the Parisi parameter (Poisson–Dirichlet(m) Gibbs weights). ``Y^(2) = 1 − β_c/β``
    is the inverse participation ratio; ``1/Y^(2)`` is the number of keys attended.
    """
    k = _f(k)
    if np.any(k <= 1):
        raise ValueError("k must be > 1")
    m = _parisi_m(effective_beta(beta, rho, q))
    cond = m < 1
    mm = np.where(cond, m, 0.5)
    val = np.exp(special.gammaln(k - mm) - special.gammaln(k) - special.gammaln(1 - mm))
    return np.where(cond, val, 0.0)


def y2(beta, rho=0.0, q=1.0) -> np.ndarray:
    """T = ∞ inverse participation ratio ``Y^(2) = max(0, 1 − β_c/β)``."""
    return 1.0 - _parisi_m(effective_beta(beta, rho, q))


def y2_squared_mean(beta, rho=0.0, q=1.0) -> np.ndarray:
    """T = ∞ two-replica moment ``E[(Σ_s A_s²)²] = Y^(4) + m(1 − m)²/6`` (0 for β ≤ β_c)."""
    m = _parisi_m(effective_beta(beta, rho, q))
    y4 = (3 - m) * (2 - m) * (1 - m) / 6.0
    return y4 + m * (1 - m) ** 2 / 6.0


def trace_j2(beta, rho=0.0, q=1.0) -> np.ndarray:
    """T = ∞ ``E tr J_t² = m(1 − m)/3`` with ``J_t = diag(A_t) − A_t A_tᵀ`` (0 for β ≤ β_c)."""
    m = _parisi_m(effective_beta(beta, rho, q))
    return m * (1 - m) / 3.0


def free_entropy(beta, rho=0.0, q=1.0) -> np.ndarray:
    """T = ∞ free entropy per ln T, ``Φ = 1 + b²/2`` (b ≤ √2) and ``Φ = √2 b`` (b ≥ √2)."""
    b = effective_beta(beta, rho, q)
    return np.where(b <= SQRT2, 1.0 + b**2 / 2.0, SQRT2 * b)


def entropy(beta, rho=0.0, q=1.0) -> np.ndarray:
    """T = ∞ entropy per ln T, ``S = Φ − β ∂_β Φ = max(0, 1 − β²/β_c²)``.

    The mean Shannon entropy of an attention row is about ``S · ln T``.
    """
    b = effective_beta(beta, rho, q)
    return np.maximum(0.0, 1.0 - b**2 / 2.0)


@dataclass(frozen=True)
class REMStats:
    """REM statistics of one attention row (arrays broadcast over the inputs).

    ``entropy`` is the Shannon entropy of the row divided by ``ln T`` (T = ∞: the REM entropy S).
    ``overlap`` is ``E Σ_s A_ts A_τs`` for two rows whose logits have correlation ρ (0 at T = ∞).
    ``free_entropy`` is Φ = E ln Σ_s e^{a_s} / ln T.
    """

    beta_c: np.ndarray
    y2: np.ndarray
    y3: np.ndarray
    y4: np.ndarray
    y2_squared_mean: np.ndarray
    trace_j2: np.ndarray
    free_entropy: np.ndarray
    entropy: np.ndarray
    overlap: np.ndarray
    seq_len: float | None

    def to_dict(self) -> dict:
        out = {}
        for k, v in self.__dict__.items():
            if isinstance(v, np.ndarray):
                out[k] = v.item() if v.ndim == 0 else v.tolist()
            else:
                out[k] = v
        return out


def stats(beta, rho=0.0, seq_len=None, *, q=1.0, finite_T: bool = True) -> REMStats:
    """All REM statistics of an attention row.

    Parameters
    ----------
    beta : β ≥ 0 (array-like).
    rho : cosine similarity ρ = p/q ∈ [0, 1] of the tokens the attention sees.
    seq_len : T ≥ 2, number of keys and the T in the initialisation; ``None`` means T = ∞.
    q : squared norm per dimension of the tokens the attention sees (1 after LayerNorm).
    finite_T : with a ``seq_len``, use the exact finite-T expectations (default) or the T = ∞ theory.
    """
    beta = check_nonneg("beta", beta)
    rho = check_rho(rho)
    q = check_nonneg("q", q)
    if seq_len is not None:
        seq_len = _check_seq_len(seq_len)
    bc = np.broadcast_to(beta_c(q, q * rho), np.broadcast_shapes(np.shape(beta), np.shape(rho), np.shape(q)))
    b = effective_beta(beta, rho, q)
    shape = np.broadcast_shapes(np.shape(beta), np.shape(rho), np.shape(q))
    if seq_len is None or not finite_T:
        st = rows.row_stats(b, None, None, finite_T=False, moments=True)
        m = rows.parisi_m(b)
        return REMStats(
            beta_c=np.asarray(bc),
            y2=st.y2,
            y3=st.y3,
            y4=st.y4,
            y2_squared_mean=st.y2_sq,
            trace_j2=m * (1 - m) / 3,
            free_entropy=free_entropy(beta, rho, q),
            entropy=entropy(beta, rho, q),
            overlap=np.zeros(shape),
            seq_len=None if seq_len is None else float(np.max(seq_len)) if np.ndim(seq_len) else float(seq_len),
        )
    st = rows.row_stats(b, None, seq_len, finite_T=True, rho=np.broadcast_to(rho, np.broadcast_shapes(shape, np.shape(seq_len))),
                        moments=True, entropy=True)
    mo = st
    y2sq = mo.y2_sq
    return REMStats(
        beta_c=np.asarray(bc),
        y2=mo.y2,
        y3=mo.y3,
        y4=mo.y4,
        y2_squared_mean=y2sq,
        trace_j2=mo.y2 - 2 * mo.y3 + y2sq,
        free_entropy=mo.log_z / np.log(seq_len),
        entropy=mo.entropy,
        overlap=mo.overlap,
        seq_len=float(seq_len) if np.ndim(seq_len) == 0 else None,
    )
