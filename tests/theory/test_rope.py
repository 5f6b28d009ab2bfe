"""RoPE's key-pair overlap c̄ (sigprop.theory.rope): the Fejér closed form vs brute-force O(T²) pair averages,
exact limits, a Monte Carlo of rotated random queries and keys (HF rotate_half, written here independently),
speed and caching, domain errors, and hypothesis bounds."""

import math
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sigprop.theory import rope


def _brute_c(delta, f, theta, d_h):
    """c(Δ) from the rotation matrices themselves: tr R(Δ) / d_h with HF rotate_half pairing."""
    r = int(f * d_h + 1e-9)
    inv = 1.0 / theta ** (np.arange(0, r, 2) / r)
    ang = np.concatenate([inv, inv]) * delta  # the angle of each rotated dimension (j and j + r/2 share one)
    return (np.sum(np.cos(ang)) + (d_h - r)) / d_h


def _brute_row(n, f, theta, d_h):
    """Average of c(s − s') over ordered pairs of distinct keys of an n-key row, by a double loop."""
    tot = 0.0
    for s in range(n):
        for s2 in range(n):
            if s != s2:
                tot += _brute_c(s - s2, f, theta, d_h)
    return tot / (n * (n - 1))


@pytest.mark.parametrize("f, theta, d_h, T", [(1.0, 1e4, 64, 2), (1.0, 1e4, 64, 37), (0.25, 1e4, 64, 50),
                                               (0.5, 10.0, 16, 64), (1.0, 1e6, 128, 23), (0.75, 2.0, 8, 40)])
def test_noncausal_matches_brute_force(f, theta, d_h, T):
    assert rope.cbar(f, theta, d_h, T) == pytest.approx(_brute_row(T, f, theta, d_h), abs=1e-12)


@pytest.mark.parametrize("f, theta, d_h, T, window", [(1.0, 1e4, 64, 30, None), (0.5, 100.0, 32, 25, None),
                                                       (1.0, 1e4, 64, 30, 7), (0.25, 1e4, 64, 20, 1)])
def test_causal_matches_brute_force(f, theta, d_h, T, window):
    rows = rope.cbar_rows(f, theta, d_h, T, window=window)
    want = [1.0] + [_brute_row(min(t, window or t), f, theta, d_h) if min(t, window or t) >= 2 else 1.0
                    for t in range(2, T + 1)]
    np.testing.assert_allclose(rows, want, atol=1e-12)
    assert rope.cbar(f, theta, d_h, T, causal=True, window=window) == pytest.approx(np.mean(want[1:]), abs=1e-12)


def _band(T, W):
    """Keys of each row of a non-causal window, written as in the torch twin: −⌊(W−1)/2⌋ ≤ s − t ≤ ⌈(W−1)/2⌉."""
    lo, hi = (W - 1) // 2, W - 1 - (W - 1) // 2
    return [[s for s in range(T) if -lo <= s - t <= hi] for t in range(T)]


@pytest.mark.parametrize("T, W", [(20, 5), (20, 6), (9, 1), (15, 40), (30, 29)])
def test_noncausal_window_matches_brute_force(T, W):
    f, theta, d_h = 1.0, 1e4, 64
    keys = _band(T, W)
    np.testing.assert_array_equal(rope.row_lengths(T, causal=False, window=W), [len(k) for k in keys])
    want = [_brute_row(len(k), f, theta, d_h) if len(k) >= 2 else 1.0 for k in keys]
    np.testing.assert_allclose(rope.cbar_rows(f, theta, d_h, T, window=W, causal=False), want, atol=1e-12)
    paired = [w for w, k in zip(want, keys, strict=True) if len(k) >= 2]
    assert rope.cbar(f, theta, d_h, T, window=W) == pytest.approx(np.mean(paired) if paired else 1.0, abs=1e-12)


def test_key_overlap_is_the_trace_of_the_rotation():
    for f, theta, d_h in ((1.0, 1e4, 64), (0.25, 500.0, 32)):
        deltas = np.array([0, 1, 5, -5, 130])
        np.testing.assert_allclose(rope.key_overlap(deltas, f, theta, d_h),
                                   [_brute_c(d, f, theta, d_h) for d in deltas], atol=1e-13)
        assert rope.key_overlap(0, f, theta, d_h) == pytest.approx(1.0, abs=1e-15)


def test_issue_value_and_limits():
    # issue 12: c̄ ≈ 0.48 at d_h = 64, T = 256 (full rotation, θ = 10⁴)
    assert rope.cbar(1.0, 1e4, 64, 256) == pytest.approx(0.48, abs=0.005)
    # no rotation: the usual q (q − p)
    for causal in (False, True):
        assert rope.cbar(0.0, 1e4, 64, 256, causal=causal) == 1.0
    assert np.all(rope.cbar_rows(0.0, 1e4, 64, 100) == 1.0)
    # T = 2: the one pair at distance 1
    assert rope.cbar(1.0, 1e4, 64, 2) == pytest.approx(float(rope.key_overlap(1, 1.0, 1e4, 64)), abs=1e-14)
    # θ = 1: every frequency is 1, so c̄ = (1 − f) + f · (mean over pairs of cos Δ)
    T = 40
    mean_cos = np.mean([math.cos(a - b) for a in range(T) for b in range(T) if a != b])
    for f in (0.25, 1.0):
        assert rope.cbar(f, 1.0, 64, T) == pytest.approx((1 - f) + f * mean_cos, abs=1e-12)
    # θ → ∞: all frequencies but θ₀ = 1 go to 0 (their cosines → 1); with d_h = 8 four frequencies
    # 1, θ^{-1/4}, θ^{-1/2}, θ^{-3/4}; at θ = 10¹² the three small ones move c̄ by < 1e-4 over T = 16 keys
    T = 16
    mean_cos = np.mean([math.cos(a - b) for a in range(T) for b in range(T) if a != b])
    assert rope.cbar(1.0, 1e12, 8, T) == pytest.approx((3 + mean_cos) / 4, abs=1e-4)
    # more rotated dimensions decorrelate more keys (same θ, T)
    assert rope.cbar(1.0, 1e4, 64, 256) < rope.cbar(0.5, 1e4, 64, 256) < rope.cbar(0.25, 1e4, 64, 256) < 1


def test_window_rows_repeat_and_window_above_T_is_no_window():
    rows = rope.cbar_rows(1.0, 1e4, 64, 50, window=8)
    assert np.all(rows[7:] == rows[7])
    np.testing.assert_array_equal(rope.cbar_rows(1.0, 1e4, 64, 50, window=500), rope.cbar_rows(1.0, 1e4, 64, 50))
    for W in (99, 100, 500):  # a band that covers the whole sequence is no window
        assert rope.cbar(1.0, 1e4, 64, 50, window=W) == pytest.approx(rope.cbar(1.0, 1e4, 64, 50), abs=1e-14)
    np.testing.assert_array_equal(rope.cbar_rows(1.0, 1e4, 64, 50, causal=False),
                                  np.full(50, rope.cbar(1.0, 1e4, 64, 50)))


def test_fast_and_cached_for_long_sequences():
    t0 = time.perf_counter()
    c = rope.cbar(1.0, 5e5, 128, 8192, causal=True)
    first = time.perf_counter() - t0
    assert first < 1.0 and 0.0 < c < 1.0
    t0 = time.perf_counter()
    assert rope.cbar(1.0, 5e5, 128, 8192, causal=True) == c
    assert time.perf_counter() - t0 < 1e-3
    rows = rope.cbar_rows(1.0, 5e5, 128, 8192)
    assert rows is rope.cbar_rows(1.0, 5e5, 128, 8192) and not rows.flags.writeable
    # the non-causal value of the longest row is the last causal row
    assert rows[-1] == pytest.approx(rope.cbar(1.0, 5e5, 128, 8192), abs=1e-12)


@pytest.mark.parametrize("kw, match", [
    ({"rope_fraction": 1.5}, "rope_fraction"), ({"rope_fraction": -0.1}, "rope_fraction"),
    ({"rope_theta": 0.5}, "rope_theta"), ({"rope_theta": float("inf")}, "rope_theta"),
    ({"head_dim": 0}, "head_dim"), ({"seq_len": 1}, "seq_len"), ({"seq_len": 2.5}, "seq_len"),
    ({"rope_fraction": 0.3, "head_dim": 10}, "even"), ({"window": 0, "causal": True}, "window"),
    ({"window": 0}, "window"), ({"window": 2.5}, "window"),
])
def test_domain_errors(kw, match):
    args = {"rope_fraction": 1.0, "rope_theta": 1e4, "head_dim": 64, "seq_len": 64} | kw
    with pytest.raises(ValueError, match=match):
        rope.cbar(**args)


@settings(max_examples=40, deadline=None)
@given(f_half=st.integers(0, 16), theta=st.floats(1.0, 1e7), T=st.integers(2, 300), causal=st.booleans())
def test_fuzz_bounds(f_half, theta, T, causal):
    # d_h = 32, r = 2 f_half rotated dims. Fejér kernel ≥ 0 ⇒ c̄(n) ≥ (1 − f) − f/(n − 1); cos ≤ 1 ⇒ c̄ ≤ 1
    f = 2 * f_half / 32
    c = rope.cbar(f, theta, 32, T, causal=causal)
    assert math.isfinite(c)
    assert c <= 1 + 1e-12
    assert c >= (1 - f) - f - 1e-12


# --------------------------------------------------------------------------- Monte Carlo: rotated random q, k


def _rotate(x, pos, f, theta):
    """HF-style RoPE on the last axis of ``x`` (…, T, d_h) at positions ``pos``: rotate_half over the first r dims."""
    d_h = x.shape[-1]
    r = int(f * d_h + 1e-9)
    if r == 0:
        return x
    inv = 1.0 / theta ** (np.arange(0, r, 2) / r)
    emb = np.concatenate([np.outer(pos, inv)] * 2, axis=-1)  # (T, r)
    xr, xp = x[..., :r], x[..., r:]
    half = np.concatenate([-xr[..., r // 2:], xr[..., : r // 2]], axis=-1)
    return np.concatenate([xr * np.cos(emb) + half * np.sin(emb), xp], axis=-1)


def _within_row_variance(f, theta, *, rho, d=512, d_h=64, T=256, heads=64, causal=False, seed=0):
    """Mean over rows of the sample variance of the logits q_t·k_s/√d_h over the keys s a row sees, divided by
    (1 − 1/n) (so its expectation is Var − mean pair covariance), for unit tokens of exact pairwise cosine ρ
    and W_Q, W_K ~ N(0, 1/d). One value per independent head (the token Gram matrix is exact, so the heads'
    weights are the only randomness and the values are i.i.d.)."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((d, T + 1)))[0] * math.sqrt(d)  # orthogonal, |·|²/d = 1
    X = math.sqrt(rho) * basis[:, :1].T + math.sqrt(1 - rho) * basis[:, 1:].T  # (T, d): q = 1, p = ρ

    def project():  # (heads, T, d_h)
        return (X @ rng.standard_normal((d, heads * d_h)) / math.sqrt(d)).reshape(T, heads, d_h).transpose(1, 0, 2)

    pos = np.arange(T)
    Q, K = _rotate(project(), pos, f, theta), _rotate(project(), pos, f, theta)
    A = Q @ K.transpose(0, 2, 1) / math.sqrt(d_h)  # (heads, T, T)
    if not causal:
        return A.var(axis=2).mean(axis=1) / (1 - 1 / T)
    n = np.arange(1, T + 1)  # row t sees keys 0 … t: running sums give every row's variance at once
    m1 = np.diagonal(np.cumsum(A, axis=2), axis1=1, axis2=2) / n
    m2 = np.diagonal(np.cumsum(A * A, axis=2), axis1=1, axis2=2) / n
    return ((m2 - m1**2)[:, 1:] / (1 - 1 / n[1:])).mean(axis=1)  # rows with ≥ 2 keys


@pytest.mark.parametrize("causal, f", [(False, 1.0), (True, 1.0), (False, 0.25)])
def test_within_row_variance_monte_carlo(causal, f):
    # theory: E[within-row variance] = q (q − c̄ p) = 1 − c̄ ρ (unit tokens, unit logit scale); without RoPE
    # 1 − ρ. 64 independent heads (d = 512, d_h = 64, T = 256, ρ = 0.6): the mean must lie within 5 standard
    # errors (spread over heads / 8, about 2% here), and the ratio RoPE / no RoPE (≈ 1.78 non-causal, f = 1)
    # within 8% (the two share their weights, so the ratio is sharper than either mean).
    rho, theta = 0.6, 1e4
    cb = rope.cbar(f, theta, 64, 256, causal=causal)
    with_rope = _within_row_variance(f, theta, rho=rho, causal=causal)
    without = _within_row_variance(0.0, theta, rho=rho, causal=causal)
    for vals, want in ((with_rope, 1 - cb * rho), (without, 1 - rho)):
        se = vals.std(ddof=1) / math.sqrt(vals.size)
        assert abs(vals.mean() - want) <= 5 * se, (vals.mean(), want, se)
        assert se < 0.04 * want
    ratio = with_rope.mean() / without.mean()
    assert ratio == pytest.approx((1 - cb * rho) / (1 - rho), rel=0.08)
    # the check can fail: RoPE really raises the variance, and at f = 1/4 (c̄ ≈ 0.86) the gap q − c̄ p is
    # told apart from q − (1 − c̄) p (at f = 1, c̄ ≈ 0.48, the two nearly coincide)
    assert ratio > 1.15
    if f < 1:
        se = with_rope.std(ddof=1) / math.sqrt(with_rope.size)
        assert abs(with_rope.mean() - (1 - (1 - cb) * rho)) > 20 * se
