"""Gaussian dual kernels of MLP activations: closed forms vs quadrature vs scipy dblquad, the dense-table
fast path, user callables, and the the paper, arXiv 2505.24333 / §10 item 7 MLP reference values."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, special

from sigprop.theory import activations as A

SW2, SB2 = 0.2, 4e-4


# --------------------------------------------------------------------------- §10 item 7


@pytest.mark.parametrize("rho, p2", [(0.1, 0.007832), (0.5, 0.012618), (0.9, 0.018631)])
def test_relu_mlp_reference(rho, p2):
    q2_, p2_ = A.mlp_map("relu", 1.0, rho, SW2, SB2)
    assert float(q2_) == pytest.approx(0.020440, abs=1e-6)
    assert float(p2_) == pytest.approx(p2, abs=1e-6)


@pytest.mark.parametrize("rho, p2", [(0.1, 0.003366), (0.5, 0.015039), (0.9, 0.026877)])
def test_tanh_mlp_reference(rho, p2):
    q2_, p2_ = A.mlp_map("tanh", 1.0, rho, SW2, SB2)
    assert float(q2_) == pytest.approx(0.029881, abs=1e-6)
    assert float(p2_) == pytest.approx(p2, abs=1e-6)


def test_mlp_map_vectorised_equals_pointwise():
    rhos = np.linspace(0, 1, 11)
    q2, p2 = A.mlp_map("tanh", 1.0, rhos, SW2, SB2)
    for r, a, b in zip(rhos, np.broadcast_to(q2, rhos.shape), p2, strict=False):
        qa, pa = A.mlp_map("tanh", 1.0, r, SW2, SB2)
        assert a == pytest.approx(float(qa), abs=1e-12)
        assert b == pytest.approx(float(pa), abs=1e-9)


# --------------------------------------------------------------------------- closed vs quadrature


@pytest.mark.parametrize("name", ["relu", "erf", "identity"])
def test_closed_forms_match_quadrature(name):
    act = A.get(name)
    assert act.closed_form
    q1 = np.geomspace(1e-3, 10.0, 9)[:, None]
    c = np.linspace(-1.0, 1.0, 41)[None, :]
    k11c, k12c = act.kernel(q1, c)
    k11q, k12q = act.kernel(q1, c, force_quadrature=True)
    np.testing.assert_allclose(k11q, k11c, atol=1e-6)
    np.testing.assert_allclose(k12q, k12c, atol=1e-6)


def test_relu_closed_form_is_arc_cosine():
    # independent: arc-cosine kernel of degree 1 (Cho & Saul), f(c) as printed in the paper
    c = np.linspace(-1, 1, 21)
    for q1 in (0.3, 1.0, 4.0):
        f = (np.sqrt(1 - c**2) + c * (np.pi - np.arccos(c))) / np.pi
        k11, k12 = A.get("relu").kernel(q1, c)
        np.testing.assert_allclose(k12, q1 / 2 * f, atol=1e-14)
        np.testing.assert_allclose(k11, q1 / 2, atol=1e-14)


def _dblquad_k12(fn, q1, c):
    s = math.sqrt(q1)
    r = math.sqrt(max(1 - c * c, 0.0))

    def integrand(z2, z1):
        return fn(s * z1) * fn(s * (c * z1 + r * z2)) * math.exp(-0.5 * (z1 * z1 + z2 * z2)) / (2 * math.pi)

    val, _ = integrate.dblquad(integrand, -10, 10, -10, 10, epsabs=1e-11, epsrel=1e-11)
    return val


def _quad_k11(fn, q1):
    s = math.sqrt(q1)
    val, _ = integrate.quad(lambda z: fn(s * z) ** 2 * math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi), -12, 12,
                            epsabs=1e-12, epsrel=1e-12, limit=200)
    return val


def _gelu_scalar(x):
    return 0.5 * x * (1 + math.erf(x / math.sqrt(2)))


@pytest.mark.parametrize("name, fn", [("tanh", math.tanh), ("gelu", _gelu_scalar)])
@pytest.mark.parametrize("q1, c", [(0.2004, 0.3), (1.0, -0.6), (3.0, 0.95)])
def test_quadrature_vs_dblquad_oracle(name, fn, q1, c):
    k11, k12 = A.get(name).kernel(q1, c)
    assert float(k12) == pytest.approx(_dblquad_k12(fn, q1, c), abs=1e-6)
    assert float(k11) == pytest.approx(_quad_k11(fn, q1), abs=1e-6)


# --------------------------------------------------------------------------- dense fast path


@pytest.mark.parametrize("name", ["relu", "tanh", "gelu"])
@pytest.mark.parametrize("q1", [0.2004, 2.5])
def test_dense_fast_path_matches_exact(name, q1):
    act = A.get(name)
    c = np.linspace(-1.0, 1.0, 5001)
    assert c.size >= A.FAST_MIN_SIZE
    k11f, k12f = act.kernel(q1, c)  # fast path
    # exact path through the public API: chunks below the fast-path size
    chunks = [act.kernel(q1, cc) for cc in np.array_split(c, 8)]
    assert all(cc.size < A.FAST_MIN_SIZE for cc in np.array_split(c, 8))
    k11e = np.concatenate([np.broadcast_to(k[0], k[1].shape) for k in chunks])
    k12e = np.concatenate([k[1] for k in chunks])
    np.testing.assert_allclose(k11f, k11e, rtol=1e-12)
    scale = np.max(np.abs(k12e))
    assert np.max(np.abs(k12f - k12e)) <= 1e-6 * scale
    # pointwise relative, away from zeros of the kernel (c = -1 for ReLU, where it vanishes like
    # (1 + c)^{3/2}; a sign change for GELU), where a relative error is meaningless
    sel = (c >= -0.99) & (np.abs(k12e) >= 1e-2 * scale)
    rel = np.abs(k12f - k12e)[sel] / np.abs(k12e)[sel]
    assert np.max(rel) <= 1e-6


def test_dense_fast_path_2d_shape():
    c = np.random.default_rng(0).uniform(-1, 1, size=(64, 80))
    k11, k12 = A.get("relu").kernel(0.5, c)
    assert k12.shape == c.shape and np.shape(k11) == c.shape
    np.testing.assert_allclose(k12, A.get("relu").kernel(0.5, c, force_quadrature=False)[1], rtol=1e-12)


# --------------------------------------------------------------------------- user callables


def _leaky_closed(q1, c, a):
    # leaky(x) = (1+a)/2 x + (1-a)/2 |x|; E|u1||u2| = q1 (2/π)(sqrt(1-c²) + c arcsin c); E[u1 |u2|] = 0
    absk = q1 * 2 / np.pi * (np.sqrt(1 - c**2) + c * np.arcsin(c))
    return ((1 + a) / 2) ** 2 * c * q1 + ((1 - a) / 2) ** 2 * absk


def test_user_callable_leaky_relu():
    a = 0.1
    leaky = lambda x: np.where(x > 0, x, a * x)  # noqa: E731
    act = A.get(leaky)
    assert not act.closed_form
    c = np.linspace(-1, 1, 17)
    for q1 in (0.05, 1.0, 6.0):
        k11, k12 = act.kernel(q1, c)
        np.testing.assert_allclose(k12, _leaky_closed(q1, c, a), atol=1e-6 * max(1, q1))
        assert float(np.asarray(k11).flat[0]) == pytest.approx(q1 * (1 + a * a) / 2, abs=1e-6 * max(1, q1))
    # independent 2-D quadrature at one point
    ref = _dblquad_k12(lambda x: x if x > 0 else a * x, 0.7, 0.4)
    assert float(act.kernel(0.7, 0.4)[1]) == pytest.approx(ref, abs=1e-6)
    # usable through mlp_map
    q2, p2 = A.mlp_map(leaky, 1.0, 0.5, SW2, SB2)
    q1 = SW2 + SB2
    assert float(p2) == pytest.approx(SB2 + SW2 * _leaky_closed(q1, (SW2 * 0.5 + SB2) / q1, a), abs=1e-8)


def test_callable_equal_to_named_function_agrees():
    act = A.get(lambda x: np.tanh(x))
    c = np.linspace(-0.9, 0.9, 7)
    np.testing.assert_allclose(act.kernel(0.8, c)[1], A.get("tanh").kernel(0.8, c)[1], atol=1e-9)


def test_callable_returning_scalar_rejected():
    with pytest.raises(ValueError, match="vectorised"):
        A.get(lambda x: 1.0)


def test_non_vectorised_callable_value_error():
    with pytest.raises(ValueError, match="vectorised"):
        A.get(lambda x: math.tanh(x))


@pytest.mark.parametrize("bad", ["swish", "", 3, None])
def test_unknown_activation(bad):
    with pytest.raises(ValueError):
        A.get(bad)


def test_names_all_resolve_and_case_insensitive():
    for n in A.NAMES:
        assert A.get(n.upper()).name == n


# --------------------------------------------------------------------------- properties


@pytest.mark.parametrize("name", list(A.NAMES))
def test_k12_at_c1_equals_k11(name):
    act = A.get(name)
    for q1 in (1e-3, 0.2004, 1.0, 7.0):
        k11, k12 = act.kernel(q1, 1.0)
        assert float(k12) == pytest.approx(float(k11), rel=1e-7, abs=1e-12)
        # Cauchy–Schwarz: |K12| ≤ K11
        k11g, k12g = act.kernel(q1, np.linspace(-1, 1, 31))
        assert np.all(np.abs(k12g) <= np.asarray(k11g) * (1 + 1e-7) + 1e-12)


def test_relu_monotone_in_c():
    c = np.linspace(-1, 1, 401)
    for q1 in (0.01, 1.0, 10.0):
        k12 = A.get("relu").kernel(q1, c)[1]
        assert np.all(np.diff(k12) > 0)
    # also through the fast path
    c = np.linspace(-1, 1, 8193)
    assert np.all(np.diff(A.get("relu").kernel(0.3, c)[1]) >= 0)


def test_odd_activations_have_odd_kernel():
    c = np.linspace(0, 1, 11)
    for name in ("tanh", "erf", "identity"):
        k_pos = A.get(name).kernel(0.9, c)[1]
        k_neg = A.get(name).kernel(0.9, -c)[1]
        np.testing.assert_allclose(k_neg, -k_pos, atol=1e-9)


def test_erf_closed_form_against_dblquad():
    k11, k12 = A.get("erf").kernel(0.5, 0.3)
    assert float(k12) == pytest.approx(_dblquad_k12(special.erf, 0.5, 0.3), abs=1e-6)


@pytest.mark.parametrize(
    "q1, c", [(-1.0, 0.0), (float("nan"), 0.0), (float("inf"), 0.0), (1.0, 1.5), (1.0, -1.01), (1.0, float("nan"))]
)
def test_kernel_domain_errors(q1, c):
    with pytest.raises(ValueError):
        A.get("relu").kernel(q1, c)


@settings(max_examples=12, deadline=None)  # each new q1 of a quadrature activation builds a table
@given(q=st.floats(1e-3, 1e3), rho=st.floats(0, 1), sw2=st.floats(1e-3, 10), sb2=st.floats(0, 1),
       name=st.sampled_from(A.NAMES))
def test_fuzz_mlp_map_finite_and_ordered(q, rho, sw2, sb2, name):
    q2, p2 = A.mlp_map(name, q, rho * q, sw2, sb2)
    q2, p2 = float(q2), float(p2)
    assert math.isfinite(q2) and math.isfinite(p2)
    assert q2 >= sb2 - 1e-12
    # |K12| ≤ K11 (Cauchy–Schwarz), up to the quadrature/spline accuracy
    assert abs(p2 - sb2) <= (q2 - sb2) * (1 + 1e-5) + 1e-12


# --------------------------------------------------------------------------- gated MLPs, output scale σ_w,out²


def _gated_mc(name, q, c, sw2, sb2, sw2_out, *, d=128, d_ff=8192, d_out=256, nets=12, seed=0):
    """Monte Carlo of a random MLP on two fixed tokens with ``|x|²/d = q`` and ``x·x'/d = c q``: gated
    ``W₂ (φ(W_g x + b_g) ⊙ (W_u x + b_u)) + b₂`` for a name in GATED, plain ``W₂ φ(W₁ x + b₁) + b₂`` otherwise.

    Returns two estimates of ``(q₂, p₂)``, each as (mean over ``nets`` networks, standard error of that mean):
    ``full``: ``(|y|²/d_out, y·y'/d_out)`` of the sampled output layer; ``hidden``: its expectation over W₂, b₂
    given the hidden layer, ``σ_w,out² h·h'/d_ff + σ_b²`` (the same quantity without the output-layer noise, so
    a sharper check of the hidden layer, which is where the gate's product kernel lives)."""
    rng = np.random.default_rng(seed)
    a, b = np.linalg.qr(rng.standard_normal((d, 2)))[0].T
    X = math.sqrt(q * d) * np.stack([a, c * a + math.sqrt(1 - c * c) * b])  # (2, d)

    def proj():
        return X @ (rng.standard_normal((d, d_ff)) * math.sqrt(sw2 / d)) + rng.standard_normal(d_ff) * math.sqrt(sb2)

    phi = A.get(name).gate.fn if name in A.GATED else A.get(name).fn
    full, hidden = [], []
    for _ in range(nets):
        h = phi(proj())
        if name in A.GATED:
            h = h * proj()
        hidden.append([sw2_out * h[0] @ h[0] / d_ff + sb2, sw2_out * h[0] @ h[1] / d_ff + sb2])
        w2 = rng.standard_normal((d_ff, d_out)) * math.sqrt(sw2_out / d_ff)
        y = h @ w2 + rng.standard_normal(d_out) * math.sqrt(sb2)
        full.append([y[0] @ y[0] / d_out, y[0] @ y[1] / d_out])
    out = {}
    for key, v in (("full", np.array(full)), ("hidden", np.array(hidden))):
        out[key] = (v.mean(axis=0), v.std(axis=0, ddof=1) / math.sqrt(nets))
    return out


_MC_CASES = [
    ("swiglu", 1.0, 0.0, 1.0, 0.5),
    ("swiglu", 2.0, 0.1, 0.5, -0.3),
    ("geglu", 1.5, 0.02, 2.0, 0.8),
    ("geglu", 0.5, 0.0, 1.0, 0.0),
    ("relu", 2.0, 0.05, 0.7, 0.4),  # plain MLP with its own output scale
]


def _check_mc(case, seed, nets, se_bound):
    name, sw2, sb2, sw2_out, c = case
    q = 1.3
    q2, p2 = (float(v) for v in A.mlp_map(name, q, c * q, sw2, sb2, sw2_out))
    mc = _gated_mc(name, q, c, sw2, sb2, sw2_out, nets=nets, seed=seed)
    for key, (mean, se) in mc.items():
        assert abs(mean[0] - q2) <= 5 * se[0], (key, mean[0], q2, se[0])
        assert abs(mean[1] - p2) <= 5 * se[1] + 1e-12, (key, mean[1], p2, se[1])
    mean, se = mc["hidden"]
    assert se[0] <= se_bound * q2  # the sharp estimate really is as sharp as claimed
    # and the check has teeth: dropping the up projection (the plain map of the gate) is far outside
    if name in A.GATED:
        q2_plain, _ = A.mlp_map(A.GATED[name], q, c * q, sw2, sb2, sw2_out)
        assert abs(mean[0] - float(q2_plain)) > 5 * se[0]


@pytest.mark.parametrize("i", range(len(_MC_CASES)))
def test_mlp_map_vs_monte_carlo_network(i):
    # 12 independent networks (d = 128, d_ff = 8192, d_out = 256): the closed form must lie within 5 standard
    # errors of the mean over networks, for both estimates (the finite-width bias is O(1/d_ff) relative, far
    # below one standard error). The hidden-layer estimate has a relative SE of about 1.5% (gated: the
    # product φ(g)u is heavy-tailed), so this catches errors of ~8% and more, e.g. a missing q₁ factor.
    _check_mc(_MC_CASES[i], seed=i, nets=12, se_bound=0.025)


@pytest.mark.slow
@pytest.mark.parametrize("i", range(len(_MC_CASES)))
def test_mlp_map_vs_monte_carlo_network_large(i):
    # 96 networks: relative SE ≈ 0.5%, tolerance ≈ 2.5%
    _check_mc(_MC_CASES[i], seed=100 + i, nets=96, se_bound=0.007)


def _silu_scalar(x):
    return x / (1.0 + math.exp(-x))


@pytest.mark.parametrize("name, fn", [("swiglu", _silu_scalar), ("geglu", _gelu_scalar)])
@pytest.mark.parametrize("q1, c", [(0.3, 0.4), (1.0, -0.7), (2.5, 0.97)])
def test_gated_kernel_is_the_product_kernel(name, fn, q1, c):
    # independent oracle: the gate's kernel by scipy dblquad times the up projection's Gaussian overlap
    k11, k12 = A.get(name).kernel(q1, c)
    assert float(k11) == pytest.approx(_quad_k11(fn, q1) * q1, abs=1e-6)
    assert float(k12) == pytest.approx(_dblquad_k12(fn, q1, c) * c * q1, abs=1e-6)


def test_gated_names_resolve_to_their_gate():
    for name, gate in A.GATED.items():
        act = A.get(name.upper())
        assert isinstance(act, A.GatedActivation) and act.name == name and act.gate.name == gate
    assert set(A.NAMES) == set(A.ACTIVATIONS) | set(A.GATED)


@pytest.mark.parametrize("name", ["relu", "tanh", "gelu", "swiglu", "geglu"])
def test_sigma_w2_out_default_and_scaling(name):
    rho = np.linspace(0.0, 1.0, 7)
    q2, p2 = A.mlp_map(name, 1.0, rho, SW2, SB2)
    # None and σ_w,out² = σ_w² are the old map, bit for bit
    for kw in ({"sigma_w2_out": None}, {"sigma_w2_out": SW2}):
        q2b, p2b = A.mlp_map(name, 1.0, rho, SW2, SB2, **kw)
        np.testing.assert_array_equal(np.broadcast_to(q2b, rho.shape), np.broadcast_to(q2, rho.shape))
        np.testing.assert_array_equal(p2b, p2)
    # the output scale multiplies the bias-free part only
    q2o, p2o = A.mlp_map(name, 1.0, rho, SW2, SB2, 3.0 * SW2)
    np.testing.assert_allclose(np.asarray(q2o) - SB2, 3.0 * (np.asarray(q2) - SB2), rtol=1e-12)
    np.testing.assert_allclose(p2o - SB2, 3.0 * (p2 - SB2), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", ["swiglu", "geglu"])
def test_gated_dense_fast_path_matches_exact(name):
    rho = np.linspace(-1.0, 1.0, 6001)
    assert rho.size >= A.FAST_MIN_SIZE
    q2f, p2f = A.mlp_map(name, np.asarray(1.0), rho, 0.7, 0.01)  # q scalar → dense table
    parts = [A.mlp_map(name, np.asarray(1.0), r, 0.7, 0.01) for r in np.array_split(rho, 8)]
    p2e = np.concatenate([pp for _, pp in parts])
    assert np.asarray(q2f).flat[0] == pytest.approx(np.asarray(parts[0][0]).flat[0], rel=1e-12)
    assert np.max(np.abs(p2f - p2e)) <= 1e-6 * np.max(np.abs(p2e - 0.01))


def test_gated_kernel_small_q_limit():
    # q₁ → 0: SiLU(g) ≈ g/2 and GELU(g) ≈ g/2, so E[h h'] → (c q₁)² / 4 (exactly the product of two linear kernels)
    for name in ("swiglu", "geglu"):
        c = np.array([-0.5, 0.2, 0.9])
        q1 = 1e-4
        k11, k12 = A.get(name).kernel(q1, c)
        np.testing.assert_allclose(k12, (c * q1) ** 2 / 4, rtol=2e-3)
        assert float(np.asarray(k11).flat[0]) == pytest.approx(q1**2 / 4, rel=2e-3)


def test_gated_map_on_a_grid_equals_pointwise():
    # a diagram grid: arrays of σ_w², σ_w,out² and p broadcast together (several q₁ → one table per q₁)
    sw2 = np.array([0.2, 1.0, 2.5])[:, None, None]
    sw2_out = np.array([0.5, 1.5])[None, :, None]
    p = np.linspace(-0.5, 1.0, 4)
    q2, p2 = A.mlp_map("swiglu", 1.0, p, sw2, 0.01, sw2_out)
    shape = np.broadcast_shapes(sw2.shape, sw2_out.shape, p.shape)
    assert np.shape(p2) == shape
    for idx in np.ndindex(shape):
        s, so, pp = (float(np.broadcast_to(v, shape)[idx]) for v in (sw2, sw2_out, p))
        qa, pa = A.mlp_map("swiglu", 1.0, pp, s, 0.01, so)
        assert float(np.broadcast_to(q2, shape)[idx]) == pytest.approx(float(qa), rel=1e-12)
        assert float(np.broadcast_to(p2, shape)[idx]) == pytest.approx(float(pa), rel=1e-9, abs=1e-12)
