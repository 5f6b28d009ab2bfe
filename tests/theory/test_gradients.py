"""Result 2 theory (sigprop.theory.gradients): closed forms, an independent Monte-Carlo oracle for E tr J²,
the Fig 3c collapse, vanishing_mask and the `sigprop gradients` CLI (theory only, no torch)."""

import json
import math
import time

import numpy as np
import pytest

from sigprop.theory import gradients as G


def _mc_trace_j2(b, T, rows=3000, seed=0):
    """Independent oracle: tr J² = ΣA² − 2ΣA³ + (ΣA²)² over i.i.d. Gaussian logits of std b sqrt(ln T)."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((rows, T)) * b * math.sqrt(math.log(T))
    a -= a.max(1, keepdims=True)
    A = np.exp(a)
    A /= A.sum(1, keepdims=True)
    s2, s3 = (A**2).sum(1), (A**3).sum(1)
    v = s2 - 2 * s3 + s2**2
    return v.mean(), v.std() / math.sqrt(rows)


@pytest.mark.parametrize("b", [0.8, 1.5, 2.5, 4.0])
def test_finite_trace_j2_matches_monte_carlo(b):
    T = 512
    m, se = _mc_trace_j2(b, T)
    th = float(G.trace_j2(b, 0.0, seq_len=T))
    assert abs(th - m) < 4 * se + 0.01 * m, (b, th, m, se)


def test_trace_j2_asymptotic_reference_values():
    # the paper, arXiv 2505.24333 (E tr J² at ρ = 0, T = ∞)
    got = G.trace_j2([1.5, 2, 3, 4, 6], 0.0, finite_T=False)
    np.testing.assert_allclose(got, [0.01797, 0.06904, 0.08306, 0.07618, 0.06005], atol=1e-5)


@pytest.mark.parametrize("rho,q", [(0.0, 1.0), (0.3, 1.0), (0.2, 2.0)])
def test_asymptotic_law_is_one_minus_betac_over_beta(rho, q):
    T, d, sv2, delta2 = 2048, 256, 0.7, 3.0
    betas = np.linspace(0.05, 8, 60)
    bc = math.sqrt(2 / (q * q * (1 - rho)))
    g = G.wq_grad_norm2(betas, rho, seq_len=T, width=d, q=q, sigma_v2=sv2, delta2=delta2, finite_T=False)
    pref = d * math.sqrt(math.log(T)) * sv2 * q * (q * (1 - rho)) ** 2 * delta2 * bc / 3
    np.testing.assert_allclose(g / pref, np.maximum(0, 1 - bc / betas), atol=1e-12)
    assert np.all(g[betas <= bc] == 0.0) and np.all(g[betas > bc] > 0)


def test_prefactor_against_direct_formula():
    # d² σ_K² q σ_v² (q − p)² Δ E tr J² with σ_K² = β sqrt(ln T)/d (the paper, arXiv 2505.24333), finite T
    beta, rho, q, T, d, sv2, delta2 = 2.2, 0.25, 1.3, 1024, 96, 0.4, 5.0
    sK2 = beta * math.sqrt(math.log(T)) / d
    p = rho * q
    b = beta * math.sqrt(q * (q - p))
    trj2 = float(G.trace_j2(b, 0.0, seq_len=T))  # depends on b only
    want = d**2 * sK2 * q * sv2 * (q - p) ** 2 * delta2 * trj2
    got = float(G.wq_grad_norm2(beta, rho, seq_len=T, width=d, q=q, sigma_v2=sv2, delta2=delta2))
    assert got == pytest.approx(want, rel=1e-10)
    assert float(G.wk_grad_norm2(beta, rho, seq_len=T, width=d, q=q, sigma_v2=sv2, delta2=delta2)) == got


@pytest.mark.parametrize("T", [512, 2048])
def test_finite_T_positive_and_monotone(T):
    betas = np.linspace(0.3, 5, 120)
    g = G.wq_grad_norm2(betas, seq_len=T, width=128)
    assert np.all(g > 0)
    assert np.all(np.diff(g) > 0)
    # and it lies above the T = ∞ law below and around β_c (finite-T smearing: no hard threshold)
    ginf = G.wq_grad_norm2(betas, seq_len=T, width=128, finite_T=False)
    assert np.all(g[betas < 2.0] > ginf[betas < 2.0])


def test_finite_width_correction_only_matters_at_low_beta():
    kw = dict(seq_len=2048, width=256, delta2=2048.0)
    lo = G.wq_grad_norm2(0.1, finite_width=True, **kw) / G.wq_grad_norm2(0.1, **kw)
    hi = G.wq_grad_norm2(3.0, finite_width=True, **kw) / G.wq_grad_norm2(3.0, **kw)
    assert lo > 5  # rank-d Gram term dominates when tr J² ~ 1/T ≪ 1/d
    assert 1.0 < hi < 1.03


def test_wv_law():
    betas = np.array([0.5, 1.0, 2.0, 4.0])
    rho, T, d = 0.2, 4096, 64
    g = G.wv_grad_norm2(betas, rho, seq_len=T, width=d, delta2=2.0, finite_T=False)
    bc = math.sqrt(2 / (1 - rho))
    np.testing.assert_allclose(g, d * 2.0 * (rho + (1 - rho) * np.maximum(0, 1 - bc / betas)))


def test_scaled_curves_collapse_in_theory():
    betas = np.linspace(1.0, 3.0, 9)
    curves = np.array([G.scaled_wq_grad(betas, seq_len=T, width=d) for T in (2048, 4096) for d in (256, 512)])
    # exactly d-independent (d→∞ law); across T only the slow finite-T change of E tr J²
    np.testing.assert_allclose(curves[0], curves[1], rtol=1e-12)
    spread = (curves.max(0) - curves.min(0)) / curves.mean(0)
    assert spread.max() < 0.15
    assert spread[-1] < 0.01
    inf = np.array([G.scaled_wq_grad(betas, seq_len=T, width=d, finite_T=False) for T in (2048, 4096) for d in (256, 512)])
    np.testing.assert_allclose(inf, np.broadcast_to(inf[0], inf.shape), rtol=1e-12)
    # vanishing at small β: orders of magnitude below the β = 3 value (the paper, arXiv 2505.24333)
    small = G.scaled_wq_grad(0.2, seq_len=2048, width=256)
    assert small < 1e-2 * curves[0, -1]


def _diagram(x=None, y=None, **kw):
    x = x or ("beta", np.linspace(0.05, 4.0, 40))
    y = y or ("alpha_sa", np.linspace(0.0, 3.0, 30))
    from sigprop import diagram as dg
    from sigprop.spec import Spec

    # the diagram itself with the T = ∞ propagation (fast); the mask then uses finite-T REM statistics
    d = dg.diagram(Spec(depth=6, seq_len=512, **kw), x, y, finite_T=False)
    d.finite_T = True
    return d


def test_vanishing_mask_shape_and_limits():
    d = _diagram()
    m = G.vanishing_mask(d)
    assert m.shape == d.labels.shape and m.dtype == bool
    assert m[:, 0].all() and not m[:, -1].any()
    assert np.all(m == m[:1])  # α_SA does not change layer 1
    # threshold: first β where the mask is False is increasing with fraction
    m05, m10, m30 = (G.vanishing_mask(d, f) for f in (0.05, 0.1, 0.3))
    assert np.all(m05 <= m10) and np.all(m10 <= m30)
    assert m05.sum() < m30.sum()
    with pytest.raises(ValueError):
        G.vanishing_mask(d, 0.0)


def test_vanishing_mask_asymptotic_threshold():
    d = _diagram(rho0=0.0)
    d.finite_T = False
    m = G.vanishing_mask(d, 0.1)
    b = d.x_values
    # T = ∞: relative gradient (1 − √2/β)₊ < 0.1  ⇔  β < √2/0.9
    np.testing.assert_array_equal(m[0], b < math.sqrt(2) / 0.9)


def test_vanishing_mask_other_axes_and_speed():
    d = _diagram(x=("rho0", np.linspace(0, 0.95, 20)), y=("alpha_sa", np.linspace(0.5, 2, 5)), beta=2.0)
    m = G.vanishing_mask(d)
    assert m.shape == (5, 20)
    # β = 2 is condensed at ρ0 = 0 but below β_c(ρ0) for large ρ0 → vanishing there
    assert not m[0, 0] and m[0, -1]
    big = _diagram(x=("beta", np.linspace(0.05, 4, 200)), y=("alpha_sa", np.linspace(0, 3, 200)))
    G.vanishing_mask(big)  # warm the table cache
    t = time.perf_counter()
    G.vanishing_mask(big)
    assert time.perf_counter() - t < 0.05


def test_bad_inputs():
    with pytest.raises(ValueError):
        G.wq_grad_norm2(-1.0)
    with pytest.raises(ValueError):
        G.wq_grad_norm2(1.0, rho=1.5)
    with pytest.raises(ValueError):
        G.wq_grad_norm2(1.0, seq_len=1)


def test_cli_gradients_json(tmp_path, capsys):
    from sigprop.cli import main

    rc = main(["gradients", "--beta-range", "0.1", "3", "5", "--seq-len", "256", "--seq-len", "512", "--width", "64",
               "--format", "json", "--out", str(tmp_path)])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert {"theory", "theory_collapse", "settings", "result", "scaling"} <= set(out)
    assert len(out["theory"]) == 2
    assert {"seq_len", "width", "beta", "scaled_finite", "scaled_asymptotic", "scaled_finite_width"} <= set(out["theory"][0])
    assert (tmp_path / "gradients.json").exists() and (tmp_path / "gradients.png").stat().st_size > 1000


@pytest.mark.parametrize("args", [
    ["--beta-range", "3", "1", "5"],
    ["--beta-range", "0.1", "3", "0"],
    ["--seq-len", "1"],
    ["--width", "0"],
    ["--mode", "bogus", "--measure"],
    ["--depth", "2", "--measure"],
    ["--rho", "1.5"],
    ["--seeds", "0", "--measure"],
])
def test_cli_bad_args_exit_2(tmp_path, capsys, args):
    from sigprop.cli import main

    rc = main(["gradients", "--out", str(tmp_path), "--format", "json", *args])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err
