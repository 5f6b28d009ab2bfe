"""Finite-T paths (sigprop extension, the paper, arXiv 2505.24333): table values, Monte-Carlo
oracles, limits, and a fuzz over T ∈ [2, 1e12]. Skipped while sigprop.theory.finite is unavailable."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("sigprop.theory.finite")

from sigprop.spec import Spec  # noqa: E402
from sigprop.theory import rem  # noqa: E402
from sigprop.theory.propagate import propagate, single_layer_cosine  # noqa: E402

SQ2 = math.sqrt(2)

# the paper, arXiv 2505.24333: E Σ A² at ρ = 0, exact finite-T quadrature
FINITE_TABLE = {
    512: {0.5: 0.0088, 1.0: 0.102, SQ2: 0.249, 2.0: 0.425, 3.0: 0.602},
    1024: {0.5: 0.0053, 1.0: 0.088, SQ2: 0.235, 2.0: 0.416, 3.0: 0.597},
    2048: {0.5: 0.0032, 1.0: 0.076, SQ2: 0.224, 2.0: 0.408, 3.0: 0.592},
    10_000: {0.5: 0.0010, 1.0: 0.056, SQ2: 0.203, 2.0: 0.393, 3.0: 0.584},
    100_000: {0.5: 0.0002, 1.0: 0.037, SQ2: 0.180, 2.0: 0.378, 3.0: 0.575},
    10_000_000: {0.5: 0.0000, 1.0: 0.018, SQ2: 0.151, 2.0: 0.359, 3.0: 0.564},
}


@pytest.mark.parametrize("T", sorted(FINITE_TABLE))
def test_finite_T_y2_table(T):
    betas = np.array(sorted(FINITE_TABLE[T]))
    got = rem.stats(betas, 0.0, T).y2
    for b, g in zip(betas, got, strict=False):
        ref = FINITE_TABLE[T][b]
        tol = 6e-5 if ref < 0.01 else 6e-4  # half a unit of the last printed digit
        assert g == pytest.approx(ref, abs=tol), (T, b)


def test_fig5_monte_carlo_values():
    # the paper, arXiv 2505.24333, T = 1e5 Monte Carlo (few-% tolerance)
    mc = {0.5: 0.0002, 1.0: 0.039, 1.2: 0.096, SQ2: 0.180, 1.6: 0.245, 2.0: 0.368, 2.5: 0.489, 3.0: 0.567,
          4.0: 0.680, 6.0: 0.777}
    betas = np.array(sorted(mc))
    got = rem.stats(betas, 0.0, 1e5).y2
    np.testing.assert_allclose(got, [mc[b] for b in betas], rtol=0.05, atol=2e-4)
    # monotone in β, above the T = ∞ curve
    assert np.all(np.diff(got) > 0)
    assert np.all(got > rem.y2(betas, 0.0))


def test_logarithmic_convergence_to_asymptotic():
    Ts = np.array([1e3, 1e5, 1e8, 1e12])
    for beta in (2.0, 3.0):
        vals = np.array([float(rem.stats(beta, 0.0, T).y2) for T in Ts])
        inf = float(rem.y2(beta, 0.0))
        assert np.all(np.diff(vals) < 0) and np.all(vals > inf)
        assert vals[-1] - inf < 0.5 * (vals[0] - inf)


def test_finite_entropy_matches_paper():
    # mean row Shannon entropy / ln T at T = 1e5: 0.875 at β = 0.5, 0.53 at β = 1 (the paper, arXiv 2505.24333)
    ent = rem.stats(np.array([0.5, 1.0]), 0.0, 1e5).entropy
    np.testing.assert_allclose(ent, [0.875, 0.53], atol=6e-3)


def _mc_row_stats(b, rho, T, n, seed=0):
    rng = np.random.default_rng(seed)
    s = b * math.sqrt(math.log(T))
    u = rng.standard_normal((n, 1, T))
    z = rng.standard_normal((n, 2, T))
    a = s * (math.sqrt(rho) * u + math.sqrt(1 - rho) * z)  # two rows with logit correlation ρ
    a -= a.max(-1, keepdims=True)
    A = np.exp(a)
    A /= A.sum(-1, keepdims=True)
    y2 = (A[:, 0] ** 2).sum(-1)
    ov = (A[:, 0] * A[:, 1]).sum(-1)
    ent = -(A[:, 0] * np.log(np.maximum(A[:, 0], 1e-300))).sum(-1) / math.log(T)
    return y2, ov, ent


@pytest.mark.parametrize("beta, rho, T", [(2.0, 0.0, 128), (3.0, 0.5, 1000), (1.0, 0.3, 256), (3.0, 0.8, 1000)])
def test_monte_carlo_oracle(beta, rho, T):
    # rem.stats takes the cosine of the tokens; their logits within a row fluctuate with β sqrt(1 − ρ),
    # and two rows' fluctuating logits have correlation ρ (the paper, arXiv 2505.24333, cross-row overlap)
    b = beta * math.sqrt(1 - rho)
    y2, ov, ent = _mc_row_stats(b, rho, T, n=3000)
    s = rem.stats(beta, rho, T)
    se = lambda x: 4 * x.std() / math.sqrt(x.size) + 1e-4  # noqa: E731
    assert float(s.y2) == pytest.approx(y2.mean(), abs=se(y2))
    assert float(s.overlap) == pytest.approx(ov.mean(), abs=se(ov))
    assert float(s.entropy) == pytest.approx(ent.mean(), abs=se(ent))


def test_cross_row_overlap_digest_T1e3():
    # the paper, arXiv 2505.24333: β = 3, T = 1e3 measured overlap 0.036 (ρ = 0.5), 0.094 (ρ = 0.8)
    ov = rem.stats(np.array([3.0, 3.0]), np.array([0.5, 0.8]), 1e3).overlap
    np.testing.assert_allclose(ov, [0.036, 0.094], rtol=0.1)


def test_single_layer_finite_T_follows_fig2_simulation():
    # the paper, arXiv 2505.24333: d=512, T=1024 simulation; finite-T theory is much closer to it than T = ∞
    betas = np.array([0.5, 1.0, 1.5, 2.0, 3.0, 5.0])
    sim = {0.2: [0.98, 0.82, 0.59, 0.47, 0.35, 0.28], 0.5: [0.998, 0.983, 0.915, 0.837, 0.728, 0.651]}
    for rho, ref in sim.items():
        fin = single_layer_cosine(betas, rho, 1024)
        inf = single_layer_cosine(betas, rho, None)
        assert np.max(np.abs(fin - ref)) < 0.06
        assert np.mean(np.abs(fin - ref)) < 0.5 * np.mean(np.abs(inf - ref))
        assert np.all(np.diff(fin) < 0)  # smeared but monotone transition


def test_finite_propagation_encoder_mid_depth():
    # the paper, arXiv 2505.24333: at β = 3 the data (≈0.60 at layer 30) lag the T = ∞ theory (0.693); finite T (T=512) lies between
    spec = Spec(depth=30, beta=3.0, rho0=0.03, seq_len=512)
    fin = propagate(spec, record=("rho",)).rho[30]
    inf = propagate(spec, finite_T=False, record=("rho",)).rho[30]
    assert inf == pytest.approx(0.693, abs=5e-4)
    assert 0.60 < fin < inf


def test_rem_cli_default_is_finite(capsys):
    import json

    from sigprop.cli import main

    assert main(["rem", "--beta", "2", "--rho", "0", "--seq-len", "512", "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["finite_T"] is True
    assert d["y2"] == pytest.approx(0.425, abs=6e-4)


@settings(max_examples=25, deadline=None)
@given(beta=st.floats(1e-3, 1e3), rho=st.floats(0, 1), T=st.floats(2, 1e12))
def test_fuzz_finite_stats(beta, rho, T):
    s = rem.stats(beta, rho, T)
    for name in ("y2", "y3", "y4", "y2_squared_mean", "trace_j2", "free_entropy", "entropy", "overlap"):
        assert math.isfinite(float(getattr(s, name))), name
    assert 1.0 / T * (1 - 1e-6) - 1e-9 <= float(s.y2) <= 1.0 + 1e-9
    assert -1e-9 <= float(s.entropy) <= 1.0 + 1e-6
    assert -1e-9 <= float(s.overlap) <= float(s.y2) + 1e-9
    assert float(s.trace_j2) >= -1e-9


@settings(max_examples=4, deadline=None)
@given(beta=st.floats(1e-3, 1e3), rho=st.floats(0, 1), a=st.floats(0, 1e3), L=st.integers(1, 20),
       T=st.integers(2, 100_000), norm=st.sampled_from(["post", "pre"]),
       attention=st.sampled_from(["softmax", "centred"]))
def test_fuzz_finite_propagate(beta, rho, a, L, T, norm, attention):
    pr = propagate(Spec(depth=L, beta=beta, rho0=rho, alpha_sa=a, seq_len=T, norm=norm, attention=attention))
    assert np.all((pr.rho >= 0) & (pr.rho <= 1))
    assert np.all(np.isfinite(pr.log_q))


@pytest.mark.parametrize("T", [1, 1.5, 0, -3, float("nan")])
def test_finite_bad_seq_len(T):
    with pytest.raises(ValueError):
        rem.stats(1.0, 0.0, T)
