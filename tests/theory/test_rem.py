"""REM statistics at T = ∞ (the paper, arXiv 2505.24333), limits, and a hypothesis fuzz."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special

from sigprop.theory import rem

# --------------------------------------------------------------------------- §10 item 1: β_c


@pytest.mark.parametrize(
    "rho, expected",
    [(0.0, 1.41421), (0.2, 1.58114), (0.5, 2.0), (0.8, 3.16228), (0.9, 4.47214), (0.95, 6.3246), (0.99, 14.142)],
)
def test_beta_c_rho_digest_values(rho, expected):
    # tolerance: half a unit in the last digit the paper prints (14.142 has 3 decimals)
    tol = 0.6e-3 if expected > 10 else 1e-4
    assert float(rem.beta_c_rho(rho)) == pytest.approx(expected, abs=tol)
    assert float(rem.beta_c(1.0, rho)) == pytest.approx(expected, abs=tol)


def test_beta_c_general_q():
    # q = 2, ρ = 0.3 -> p = 0.6: sqrt(2/(2·1.4)) = 0.8452
    assert float(rem.beta_c(2.0, 0.6)) == pytest.approx(0.8452, abs=1e-4)
    q = np.array([0.5, 1.0, 3.0])[:, None]
    p = np.array([0.0, 0.1, 0.4])[None, :]
    np.testing.assert_allclose(rem.beta_c(q, p), np.sqrt(2 / (q * (q - p))), rtol=1e-14)


def test_beta_c_diverges_at_rank_collapse():
    assert np.isinf(rem.beta_c_rho(1.0))
    bc = rem.beta_c_rho(np.array([0.9, 0.99, 0.999, 0.9999]))
    assert np.all(np.diff(bc) > 0)
    # ρ -> 1: Y² = 0 for any finite β (all β are "low β" near rank collapse)
    assert float(rem.y2(1e6, 1.0)) == 0.0
    assert float(rem.y2(100.0, 0.9999)) == 0.0


# --------------------------------------------------------------------------- §10 item 2: moment table

TABLE = {  # β: (Y², Y³, Y⁴, E(ΣA²)², E tr J², Φ)
    1.5: (0.05719, 0.03023, 0.02073, 0.02124, 0.01797, 2.1213),
    2.0: (0.29289, 0.18934, 0.14471, 0.15482, 0.06904, 2.8284),
    3.0: (0.52860, 0.40400, 0.34052, 0.36247, 0.08306, 4.2426),
    4.0: (0.64645, 0.53217, 0.46945, 0.49408, 0.07618, 5.6569),
    6.0: (0.76430, 0.67422, 0.62125, 0.64420, 0.06005, 8.4853),
}


@pytest.mark.parametrize("beta", sorted(TABLE))
def test_rho0_moment_table(beta):
    y2, y3, y4, y22, tj2, phi = TABLE[beta]
    s = rem.stats(beta, 0.0, None)
    tol = 1e-4
    assert float(s.y2) == pytest.approx(y2, abs=tol)
    assert float(s.y3) == pytest.approx(y3, abs=tol)
    assert float(s.y4) == pytest.approx(y4, abs=tol)
    assert float(s.y2_squared_mean) == pytest.approx(y22, abs=tol)
    assert float(s.trace_j2) == pytest.approx(tj2, abs=tol)
    assert float(s.free_entropy) == pytest.approx(phi, abs=tol)
    # the standalone functions agree with stats()
    assert float(rem.y2(beta)) == pytest.approx(y2, abs=tol)
    assert float(rem.participation_ratio(2, beta)) == pytest.approx(y2, abs=tol)
    assert float(rem.participation_ratio(3, beta)) == pytest.approx(y3, abs=tol)
    assert float(rem.participation_ratio(4, beta)) == pytest.approx(y4, abs=tol)
    assert float(rem.y2_squared_mean(beta)) == pytest.approx(y22, abs=tol)
    assert float(rem.trace_j2(beta)) == pytest.approx(tj2, abs=tol)
    assert float(rem.free_entropy(beta)) == pytest.approx(phi, abs=tol)


def test_table_vectorised_matches_scalar():
    betas = np.array(sorted(TABLE))
    s = rem.stats(betas, 0.0, None)
    np.testing.assert_allclose(s.y2, [TABLE[b][0] for b in betas], atol=1e-4)
    np.testing.assert_allclose(s.trace_j2, [TABLE[b][4] for b in betas], atol=1e-4)


@pytest.mark.parametrize("beta", [0.0, 0.3, 1.0, 1.4, math.sqrt(2)])
def test_below_beta_c_everything_vanishes(beta):
    s = rem.stats(beta, 0.0, None)
    for name in ("y2", "y3", "y4", "y2_squared_mean", "trace_j2", "overlap"):
        assert float(getattr(s, name)) == pytest.approx(0.0, abs=1e-12), name
    assert float(s.free_entropy) == pytest.approx(1 + beta**2 / 2, abs=1e-12)


def test_phi_at_one_and_continuity_at_beta_c():
    assert float(rem.free_entropy(1.0, 0.0)) == pytest.approx(1.5, abs=1e-12)
    for rho in (0.0, 0.3, 0.8):
        bc = float(rem.beta_c_rho(rho))
        assert float(rem.free_entropy(bc, rho)) == pytest.approx(2.0, abs=1e-10)
        assert float(rem.free_entropy(bc * (1 - 1e-9), rho)) == pytest.approx(2.0, abs=1e-6)
        assert float(rem.free_entropy(bc * (1 + 1e-9), rho)) == pytest.approx(2.0, abs=1e-6)
        # Y² is continuous at β_c
        assert float(rem.y2(bc * (1 + 1e-9), rho)) == pytest.approx(0.0, abs=1e-6)


def test_general_p_participation_ratio_closed_form():
    # Y^(p) = Γ(p − m)/(Γ(p)Γ(1 − m)), m = β_c/β, checked for non-integer p too
    for beta, rho in [(2.0, 0.0), (5.0, 0.3), (10.0, 0.8)]:
        m = float(rem.beta_c_rho(rho)) / beta
        for k in (2.0, 2.5, 3.0, 7.0):
            ref = special.gamma(k - m) / (special.gamma(k) * special.gamma(1 - m))
            assert float(rem.participation_ratio(k, beta, rho)) == pytest.approx(ref, rel=1e-10)
    with pytest.raises(ValueError):
        rem.participation_ratio(1.0, 2.0)


def test_trace_j2_identity():
    # E tr J² = Y² − 2Y³ + E(ΣA²)² = m(1 − m)/3 (the paper, arXiv 2505.24333)
    betas = np.linspace(1.5, 20, 40)
    s = rem.stats(betas, 0.0, None)
    np.testing.assert_allclose(s.y2 - 2 * s.y3 + s.y2_squared_mean, s.trace_j2, atol=1e-12)
    m = np.sqrt(2) / betas
    np.testing.assert_allclose(s.trace_j2, m * (1 - m) / 3, atol=1e-12)
    # replacing E(ΣA²)² by (Y²)² would make tr J² vanish: the two-replica term must differ from it
    assert np.all(s.y2_squared_mean > s.y2**2)


# --------------------------------------------------------------------------- §10 item 3: entropy


def test_entropy_values():
    assert float(rem.entropy(0.5, 0.0)) == pytest.approx(0.875, abs=1e-12)
    assert float(rem.entropy(1.0, 0.0)) == pytest.approx(0.5, abs=1e-12)
    betas = np.linspace(0, 1.4, 15)
    np.testing.assert_allclose(rem.entropy(betas, 0.0), 1 - betas**2 / 2, atol=1e-12)
    assert float(rem.entropy(3.0, 0.0)) == 0.0


def test_entropy_is_phi_minus_beta_dphi():
    # S = Φ − β ∂_β Φ, numerical derivative of the library's Φ
    for rho in (0.0, 0.4):
        for beta in (0.3, 0.9, 1.2, 2.5, 5.0):
            h = 1e-6
            dphi = (float(rem.free_entropy(beta + h, rho)) - float(rem.free_entropy(beta - h, rho))) / (2 * h)
            s = float(rem.free_entropy(beta, rho)) - beta * dphi
            assert float(rem.entropy(beta, rho)) == pytest.approx(s, abs=1e-6)


def test_rho_dependence_through_effective_beta():
    # every quantity depends on (β, ρ) only via β sqrt(1 − ρ) (q = 1)
    for beta, rho in [(3.0, 0.5), (2.5, 0.2), (8.0, 0.9)]:
        b = beta * math.sqrt(1 - rho)
        a, z = rem.stats(beta, rho, None), rem.stats(b, 0.0, None)
        for name in ("y2", "y3", "y4", "trace_j2", "free_entropy", "entropy"):
            assert float(getattr(a, name)) == pytest.approx(float(getattr(z, name)), abs=1e-12)


def test_large_beta_limit():
    assert float(rem.y2(1e8, 0.0)) == pytest.approx(1.0, abs=1e-7)
    assert float(rem.y2(1e8, 0.5)) == pytest.approx(1.0, abs=1e-7)
    assert float(rem.trace_j2(1e8)) == pytest.approx(0.0, abs=1e-7)


def test_asymptotic_ignores_seq_len_with_finite_T_false():
    a = rem.stats(np.array([1.0, 2.0, 3.0]), 0.2, 512, finite_T=False)
    b = rem.stats(np.array([1.0, 2.0, 3.0]), 0.2, None)
    np.testing.assert_array_equal(a.y2, b.y2)
    assert a.seq_len == 512.0 and b.seq_len is None
    d = a.to_dict()
    assert set(d) >= {"beta_c", "y2", "y3", "trace_j2", "free_entropy", "entropy", "overlap"}


# --------------------------------------------------------------------------- fuzz

betas = st.floats(1e-3, 1e3, allow_nan=False)
rhos = st.floats(0.0, 1.0, allow_nan=False)


@settings(max_examples=150, deadline=None)
@given(beta=betas, rho=rhos, q=st.floats(1e-3, 1e2))
def test_fuzz_finite_inside_domain(beta, rho, q):
    s = rem.stats(beta, rho, None, q=q)
    for name in ("y2", "y3", "y4", "y2_squared_mean", "trace_j2", "free_entropy", "entropy"):
        v = float(getattr(s, name))
        assert math.isfinite(v), name
    assert 0.0 <= float(s.y2) <= 1.0
    assert 0.0 <= float(s.y4) <= float(s.y3) <= float(s.y2) <= 1.0
    assert 0.0 <= float(s.trace_j2) <= 1 / 12 + 1e-12
    assert 0.0 <= float(s.entropy) <= 1.0
    assert float(s.free_entropy) >= 1.0
    assert float(s.beta_c) > 0
    assert float(rem.effective_beta(beta, rho, q)) >= 0
    assert 0.0 <= float(rem.participation_ratio(2.5, beta, rho, q)) <= 1.0


@settings(max_examples=60, deadline=None)
@given(beta=betas, rho=rhos)
def test_fuzz_monotone_in_beta(beta, rho):
    y_lo, y_hi = float(rem.y2(beta, rho)), float(rem.y2(beta * 1.01, rho))
    assert y_hi >= y_lo
    assert float(rem.entropy(beta * 1.01, rho)) <= float(rem.entropy(beta, rho))


BAD = [
    lambda: rem.y2(-1.0, 0.0),
    lambda: rem.y2(float("nan"), 0.0),
    lambda: rem.y2(1.0, 1.5),
    lambda: rem.y2(1.0, -0.1),
    lambda: rem.y2(1.0, float("nan")),
    lambda: rem.stats(-0.5, 0.0, None),
    lambda: rem.stats(1.0, 2.0, None),
    lambda: rem.stats(1.0, 0.0, 1),
    lambda: rem.stats(1.0, 0.0, 1.5, finite_T=False),
    lambda: rem.stats(1.0, 0.0, float("nan")),
    lambda: rem.stats(1.0, 0.0, None, q=-1.0),
    lambda: rem.beta_c(0.0, 0.0),
    lambda: rem.beta_c(1.0, 2.0),
    lambda: rem.beta_c(float("nan"), 0.0),
    lambda: rem.beta_c_rho(1.2),
    lambda: rem.free_entropy(-1.0),
    lambda: rem.entropy(1.0, 1.01),
    lambda: rem.trace_j2(np.array([1.0, -1.0])),
    lambda: rem.y2_squared_mean(float("inf")),
    lambda: rem.effective_beta(1.0, 0.0, q=float("nan")),
]


@pytest.mark.parametrize("call", BAD)
def test_errors_outside_domain(call):
    with pytest.raises(ValueError):
        call()


@settings(max_examples=40, deadline=None)
@given(beta=st.floats(-1e3, -1e-6), rho=st.floats(1.0 + 1e-9, 10.0), T=st.floats(-10, 1.999))
def test_fuzz_errors_outside_domain(beta, rho, T):
    with pytest.raises(ValueError):
        rem.stats(beta, 0.5, None)
    with pytest.raises(ValueError):
        rem.stats(1.0, rho, None)
    with pytest.raises(ValueError):
        rem.stats(1.0, 0.5, T, finite_T=False)
