"""Tests of sigprop.theory.finite (exact finite-T REM expectations) against independent oracles:
n = 2 closed form by scipy quad, the the paper, arXiv 2505.24333, numpy Monte Carlo, limits, and properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, special

from sigprop.theory import finite, rem

SQ = math.sqrt


# ------------------------------------------------------------------------------------------------
# n = 2 oracle: A_1 = sigmoid(a_1 − a_2), a_1 − a_2 ~ N(0, 2 s²)
# ------------------------------------------------------------------------------------------------


def _n2_oracle(s: float) -> dict:
    sd = SQ(2.0) * s

    def E(f):
        return integrate.quad(
            lambda x: f(x) * math.exp(-0.5 * (x / sd) ** 2) / (sd * SQ(2 * math.pi)),
            -np.inf,
            np.inf,
            epsabs=1e-12,
            epsrel=1e-11,
            limit=400,
        )[0]

    sg = special.expit
    return {
        "y2": E(lambda x: sg(x) ** 2 + sg(-x) ** 2),
        "y3": E(lambda x: sg(x) ** 3 + sg(-x) ** 3),
        "y4": E(lambda x: sg(x) ** 4 + sg(-x) ** 4),
        "pair22": E(lambda x: 2 * sg(x) ** 2 * sg(-x) ** 2),
        "entropy": E(lambda x: -(sg(x) * special.log_expit(x) + sg(-x) * special.log_expit(-x))),
        # ln Z = max(a1, a2) + ln(1 + e^{−|a1−a2|}); E max = s/√π
        "log_z": s / SQ(math.pi) + E(lambda x: math.log1p(math.exp(-abs(x)))),
    }


@pytest.mark.parametrize("s", [0.05, 0.4, 0.7, 1.0, 2.5, 8.0, 60.0])
def test_n2_oracle(s):
    got = finite.moments_direct(s, 2.0)
    want = _n2_oracle(s)
    for k, v in want.items():
        assert abs(float(getattr(got, k)) - v) < 1e-6, (k, s)


# ------------------------------------------------------------------------------------------------
# the paper, arXiv 2505.24333 of E Σ A² (ρ = 0)
# ------------------------------------------------------------------------------------------------

_DIGEST_TS = [512, 1024, 2048, 1e4, 1e5, 1e7]
_DIGEST = {
    0.5: ["0.0088", "0.0053", "0.0032", "0.0010", "0.0002", "0.0000"],
    1.0: ["0.102", "0.088", "0.076", "0.056", "0.037", "0.018"],
    SQ(2.0): ["0.249", "0.235", "0.224", "0.203", "0.180", "0.151"],
    2.0: ["0.425", "0.416", "0.408", "0.393", "0.378", "0.359"],
    3.0: ["0.602", "0.597", "0.592", "0.584", "0.575", "0.564"],
}


@pytest.mark.parametrize("beta", list(_DIGEST))
def test_digest_table(beta):
    for T, txt in zip(_DIGEST_TS, _DIGEST[beta], strict=True):
        ulp = 10.0 ** -(len(txt.split(".")[1]))
        y2 = float(finite.moments(beta, T).y2)
        assert abs(y2 - float(txt)) <= 1.0 * ulp + 1e-12, (beta, T, y2, txt)


# ------------------------------------------------------------------------------------------------
# Monte Carlo
# ------------------------------------------------------------------------------------------------


def _mc_rows(z: np.ndarray, s: float):
    a = s * z
    a = a - a.max(axis=1, keepdims=True)
    A = np.exp(a)
    A /= A.sum(axis=1, keepdims=True)
    return A


def _mc_stats(T: int, betas, rows: int, seed: int, chunk: int = 4000):
    """Per-β samples of ΣA², ΣA³, Σ_{s≠s'}A²A², −ΣA lnA, ln Z (common random numbers across β)."""
    rng = np.random.default_rng(seed)
    out = {b: {k: [] for k in ("y2", "y3", "pair22", "entropy", "log_z")} for b in betas}
    done = 0
    while done < rows:
        m = min(chunk, rows - done)
        z = rng.standard_normal((m, T))
        for beta in betas:
            s = beta * SQ(math.log(T))
            a = s * z
            amax = a.max(axis=1, keepdims=True)
            e = np.exp(a - amax)
            zsum = e.sum(axis=1)
            A = e / zsum[:, None]
            a2 = (A * A).sum(1)
            a4 = (A**4).sum(1)
            o = out[beta]
            o["y2"].append(a2)
            o["y3"].append((A**3).sum(1))
            o["pair22"].append(a2 * a2 - a4)
            with np.errstate(divide="ignore", invalid="ignore"):
                o["entropy"].append(-np.where(A > 0, A * np.log(A), 0.0).sum(1))
            o["log_z"].append(amax[:, 0] + np.log(zsum))
        done += m
    return {b: {k: np.concatenate(v) for k, v in d.items()} for b, d in out.items()}


def _check(mc: np.ndarray, val: float, floor: float, what: str):
    se = mc.std(ddof=1) / math.sqrt(mc.size)
    diff = abs(mc.mean() - val)
    assert diff < max(floor, 4 * se), (what, mc.mean(), val, se)
    return se


_MC_BETAS = [0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0]


def _mc_y2_adaptive(T: int, beta: float, seed: int, target_se: float = 2.6e-4, cap: int = 1_000_000):
    """ΣA² samples with a row count chosen from a pilot so that the standard error is ≤ target_se."""
    rng = np.random.default_rng(seed)
    s = beta * SQ(math.log(T))
    out = []
    done, need = 0, 10_000
    while done < need:
        m = min(20_000, need - done)
        A = _mc_rows(rng.standard_normal((m, T)), s)
        out.append((A * A).sum(1))
        done += m
        if done == 10_000:
            sd = np.concatenate(out).std(ddof=1)
            need = int(min(cap, max(10_000, (sd / target_se) ** 2)))
    return np.concatenate(out)


@pytest.mark.parametrize(
    "T,betas", [(64, _MC_BETAS), pytest.param(256, _MC_BETAS, marks=pytest.mark.slow)]
)
def test_mc_y2(T, betas):
    mom = finite.moments(np.array(betas), T)
    for i, beta in enumerate(betas):
        mc = _mc_y2_adaptive(T, beta, seed=int(T + 10 * beta))
        se = _check(mc, float(mom.y2[i]), 1e-3, f"y2 β={beta} T={T}")
        assert se <= 3e-4


def test_mc_other_moments():
    T = 64
    stats = _mc_stats(T, _MC_BETAS, 40_000, seed=11)
    mom = finite.moments(np.array(_MC_BETAS), T)
    for i, beta in enumerate(_MC_BETAS):
        d = stats[beta]
        _check(d["y3"], float(mom.y3[i]), 1e-3, f"y3 β={beta}")
        _check(d["pair22"], float(mom.pair22[i]), 1e-3, f"pair22 β={beta}")
        _check(d["entropy"], float(mom.entropy[i]), 2e-3, f"entropy β={beta}")
        _check(d["log_z"], float(mom.log_z[i]), 2e-3, f"log_z β={beta}")


@pytest.mark.slow
@pytest.mark.parametrize("T,rows", [(1024, 60_000), (10_000, 10_000), (100_000, 2_000), (1_000_000, 300)])
def test_mc_y2_large_T(T, rows):
    stats = _mc_stats(T, _MC_BETAS, rows, seed=T, chunk=max(1, 4_000_000 // T))
    mom = finite.moments(np.array(_MC_BETAS), T)
    for i, beta in enumerate(_MC_BETAS):
        _check(stats[beta]["y2"], float(mom.y2[i]), 1e-3, f"y2 β={beta} T={T}")
        _check(stats[beta]["entropy"], float(mom.entropy[i]), 5e-3, f"entropy β={beta} T={T}")


def _mc_overlap(T: int, s: float, rho: float, rows: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = []
    chunk = 2000
    for start in range(0, rows, chunk):
        m = min(chunk, rows - start)
        h = rng.standard_normal((m, T))
        A = _mc_rows(SQ(rho) * h + SQ(1 - rho) * rng.standard_normal((m, T)), s)
        B = _mc_rows(SQ(rho) * h + SQ(1 - rho) * rng.standard_normal((m, T)), s)
        out.append((A * B).sum(1))
    return np.concatenate(out)


@pytest.mark.parametrize("beta,rho,paper", [(3.0, 0.5, 0.036), (3.0, 0.8, 0.094), (1.0, 0.5, None)])
def test_mc_overlap_T1000(beta, rho, paper):
    """Row logits' fluctuating parts have std β√(1−ρ)·√lnT and correlation ρ (the paper, arXiv 2505.24333 mapping)."""
    T = 1000
    b = beta * SQ(1 - rho)
    s = b * SQ(math.log(T))
    val = float(finite.overlap_direct(s, rho, T))
    assert abs(float(finite.overlap_s(s, rho, T)) - val) < 1e-12  # few points: direct path
    mc = _mc_overlap(T, s, rho, rows=12_000, seed=int(100 * rho + beta))
    _check(mc, val, 1e-3, f"overlap β={beta} ρ={rho}")
    if paper is not None:  # paper's Monte Carlo numbers, 2 significant digits, its own noise
        assert abs(val - paper) < 0.1 * paper


def test_mc_overlap_small_T_many_rhos():
    T = 64
    for b, rho in [(0.8, 0.3), (2.0, 0.6), (4.0, 0.9), (1.5, 0.97)]:
        s = b * SQ(math.log(T))
        val = float(finite.overlap_direct(s, rho, T))
        mc = _mc_overlap(T, s, rho, rows=60_000, seed=7)
        _check(mc, val, 1e-3, f"overlap b={b} ρ={rho}")


# ------------------------------------------------------------------------------------------------
# limits
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2.0, 37.5, 1e3, 1e12])
def test_small_b_limit(n):
    m = finite.moments_direct(1e-7, n)
    assert abs(float(m.y2) - 1 / n) < 1e-9
    assert abs(float(m.entropy) - math.log(n)) < 1e-9
    assert abs(float(m.log_z) - math.log(n)) < 1e-9
    o = finite.overlap_direct(1e-7, 0.5, n)
    assert abs(float(o) - 1 / n) < 1e-7 / n  # overlap quadrature: ~1e-8 relative accuracy
    z = finite.moments_direct(0.0, n)
    assert float(z.y2) == pytest.approx(1 / n) and float(z.entropy) == pytest.approx(math.log(n))


@pytest.mark.parametrize("n", [2.0, 1e3, 1e12])
def test_large_b_limit(n):
    m = finite.moments_direct(np.array([10.0, 1e2, 1e3]) * SQ(math.log(n)), n)
    assert np.all(np.diff(m.y2) > 0) and np.all(np.diff(m.entropy) < 0)
    assert float(m.y2[-1]) > 0.998 and float(m.entropy[-1]) < 0.005
    assert float(m.pair22[-1]) < 1e-3
    # tabled path reaches the b = ∞ limit smoothly
    t = finite.moments(np.array([1e6, 1e9]), n)
    assert np.all(t.y2 > 0.99999) and np.all(t.entropy < 1e-4)


def test_rho_limits():
    for s, n in [(0.3, 5.0), (3.0, 100.0), (20.0, 1e6)]:
        y2 = float(finite.moments_direct(s, n).y2)
        assert float(finite.overlap_direct(s, 1.0, n)) == pytest.approx(y2, abs=1e-12)
        assert abs(float(finite.overlap_direct(s, 1 - 1e-6, n)) - y2) < 1e-4
        assert float(finite.overlap_direct(s, 0.0, n)) == pytest.approx(1 / n, rel=1e-12)
        assert abs(float(finite.overlap_direct(s, 1e-6, n)) - 1 / n) < 1e-5
        o = finite.overlap_direct(s, np.array([0.2, 0.5, 0.8, 0.95]), n)
        assert np.all(np.diff(o) > 0) and np.all(o <= y2 + 1e-9)


def test_trend_towards_T_infinity():
    Ts = np.array([1e2, 1e3, 1e4, 1e6, 1e9, 1e12])
    for beta in [0.7, 1.0, 2.0, 3.0]:
        y2 = np.array([float(finite.moments_direct(beta * SQ(math.log(T)), T).y2) for T in Ts])
        ent = np.array([float(finite.moments_direct(beta * SQ(math.log(T)), T).entropy) / math.log(T) for T in Ts])
        y2_inf = float(rem.y2(beta))
        s_inf = float(rem.entropy(beta))
        assert np.all(np.diff(y2) < 0) and np.all(y2 > y2_inf)
        assert np.all(np.diff(np.abs(y2 - y2_inf)) < 0)
        assert np.all(np.diff(np.abs(ent - s_inf)) < 0)


# ------------------------------------------------------------------------------------------------
# tables vs direct quadrature
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("T", [1000.0, 1e12])
def test_moment_table_vs_direct(T):
    rng = np.random.default_rng(3)
    b = np.concatenate([rng.uniform(0, 4, 30), np.exp(rng.uniform(math.log(4), math.log(1e3), 10))])
    tab = finite.moments(b, T)
    d = finite.moments_direct(b * SQ(math.log(T)), T)
    for k in ("y2", "y3", "y4", "pair22", "entropy", "log_z"):
        assert np.max(np.abs(getattr(tab, k) - getattr(d, k))) < 1e-5, k


def test_overlap_table_vs_direct():
    T = 1000.0
    rng = np.random.default_rng(4)
    b = np.concatenate([rng.uniform(0, 4, 20), np.exp(rng.uniform(math.log(4), math.log(1e3), 6))])
    rho = rng.uniform(0, 1, b.size)
    tab = finite.overlap(b, rho, T)
    d = finite.overlap_direct(b * SQ(math.log(T)), rho, T)
    assert np.max(np.abs(tab - d)) < 1e-5


def test_moments_s_with_many_n():
    n = np.arange(2, 32, dtype=float)
    s = 1.7
    finite.clear_cache()  # earlier tests may have tabled some of these n; this checks the direct path
    m = finite.moments_s(s, n)
    d = finite.moments_direct(s, n)
    assert m.y2.shape == n.shape
    assert np.max(np.abs(m.y2 - d.y2)) < 1e-12  # few points per n: direct path
    assert np.all(np.diff(m.y2) < 0)


def test_broadcast_shapes():
    m = finite.moments(np.zeros((3, 1)), np.array([10.0, 20.0]))
    assert m.y2.shape == (3, 2)
    o = finite.overlap(np.ones((2, 1)), np.array([0.1, 0.5, 0.9]), 50.0)
    assert o.shape == (2, 3)


# ------------------------------------------------------------------------------------------------
# properties
# ------------------------------------------------------------------------------------------------

_b = st.floats(0.0, 1e3, allow_nan=False)
_n = st.floats(0.0, math.log10(1e12)).map(lambda e: max(2.0, 10.0**e))
_rho = st.floats(0.0, 1.0)


@settings(max_examples=40, deadline=None)
@given(_b, _n)
def test_property_moments(b, n):
    m = finite.moments_direct(b * SQ(math.log(n)), n)
    y2, y3, y4, p22, ent, lz = (float(getattr(m, k)) for k in ("y2", "y3", "y4", "pair22", "entropy", "log_z"))
    assert all(math.isfinite(v) for v in (y2, y3, y4, p22, ent, lz))
    assert 0 <= y4 <= y3 <= y2 <= 1
    assert y2 >= 1 / n - 1e-15
    # Jensen: equality at b → 0 (Σ A² = 1/n deterministically); the quadrature is accurate to ~1e-8 relative
    assert y2 * y2 <= (y4 + p22) * (1 + 1e-7) + 1e-12
    assert 0 <= ent <= math.log(n) + 1e-12
    assert lz >= math.log(n) - 1e-9 or b > 0  # E ln Z ≥ ln n + E mean a = ln n
    assert lz >= math.log(n) - 1e-7


@settings(max_examples=25, deadline=None)
@given(st.floats(0.0, 30.0), _n, _rho)
def test_property_overlap(b, n, rho):
    s = b * SQ(math.log(n))
    o = float(finite.overlap_direct(s, rho, n))
    y2 = float(finite.moments_direct(s, n).y2)
    assert math.isfinite(o)
    assert 1 / n - 1e-12 <= o <= y2 + 1e-9


@settings(max_examples=30, deadline=None)
@given(st.lists(_b, min_size=1, max_size=50), _rho)
def test_property_tabled_paths(bs, rho):
    T = 1000.0
    m = finite.moments(np.array(bs * 2), T)  # ≥ 2 points, may use table or direct
    assert np.all(np.isfinite(m.y2)) and np.all((m.y2 >= 0) & (m.y2 <= 1))
    assert np.all(m.y4 <= m.y3 + 1e-9) and np.all(m.y3 <= m.y2 + 1e-9)
    assert np.all((m.entropy >= 0) & (m.entropy <= math.log(T) + 1e-9))
    o = finite.overlap(np.array(bs), rho, T)
    assert np.all(np.isfinite(o)) and np.all(o <= np.asarray(finite.moments(np.array(bs), T).y2) + 1e-5)


@pytest.mark.parametrize(
    "call,word",
    [
        (lambda: finite.moments(-0.1, 100), "b"),
        (lambda: finite.moments(1.0, 1.5), "T"),
        (lambda: finite.moments(np.nan, 100), "b"),
        (lambda: finite.moments(1.0, np.inf), "T"),
        (lambda: finite.moments_s(-1.0, 100), "s"),
        (lambda: finite.moments_s(1.0, 1.0), "n"),
        (lambda: finite.overlap(1.0, 1.2, 100), "rho"),
        (lambda: finite.overlap(1.0, -0.1, 100), "rho"),
        (lambda: finite.overlap_s(1.0, np.nan, 100), "rho"),
        (lambda: finite.overlap_direct(1.0, 0.5, 0.0), "n"),
        (lambda: finite.moments_direct(np.inf, 10), "s"),
    ],
)
def test_invalid_inputs(call, word):
    with pytest.raises(ValueError, match=word):
        call()
