"""Block pieces and whole blocks vs independent re-implementations of the paper's recursions
(§3.1, §3.3, §3.4, §6), at T = ∞ (finite_T=False)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sigprop.spec import Spec
from sigprop.theory import blocks as B


def _y2_ref(beta, q, p):
    gap = q * (q - p)
    if gap <= 0:
        return 0.0
    return max(0.0, 1.0 - math.sqrt(2.0 / gap) / beta) if beta > 0 else 0.0


def _relu_f(c):
    c = min(max(c, -1.0), 1.0)
    return (math.sqrt(1 - c * c) + c * (math.pi - math.acos(c))) / math.pi


def _relu_mlp_unit(rho, sw2, sb2):
    """Digest §3.3 step 3 (authors' get_block_update_wres), unit-norm input with cosine ρ."""
    q1 = sw2 + sb2
    p1 = sw2 * rho + sb2
    q2 = sw2 * q1 / 2 + sb2
    p2 = sw2 * q1 / 2 * _relu_f(p1 / q1) + sb2
    return q2, p2


def post_ln_block_ref(rho, beta, a_sa, a_mlp, sv2, sbv2, sw2, sb2, centred=False):
    """Digest §3.3 (softmax) / §6 (GC post-LN) on q = 1."""
    y = _y2_ref(beta, 1.0, rho)
    if centred:
        q, p = a_sa**2 + sv2 * (1 - rho) * y, a_sa**2 * rho
        rho1 = p / q
    else:
        qa, pa = rho + (1 - rho) * y, rho
        rho1 = (sv2 * pa + sbv2 + a_sa**2 * rho) / (sv2 * qa + sbv2 + a_sa**2)
    q2, p2 = _relu_mlp_unit(rho1, sw2, sb2)
    return (p2 + a_mlp**2 * rho1) / (q2 + a_mlp**2)


def pre_ln_block_ref(q, p, beta, a_sa, a_mlp, sv2, sbv2, sw2, sb2, centred=False, buggy_beta_c=False):
    """Digest §3.4 (softmax) / §6 (GC pre-LN); β_c on the LN'd input unless ``buggy_beta_c``."""
    rho = p / q
    y = _y2_ref(beta, q, p) if buggy_beta_c else _y2_ref(beta, 1.0, rho)
    if centred:
        q, p = a_sa**2 * q + sv2 * (1 - rho) * y, a_sa**2 * p
    else:
        q = a_sa**2 * q + sv2 * (rho + (1 - rho) * y) + sbv2
        p = a_sa**2 * p + sv2 * rho + sbv2
    q2, p2 = _relu_mlp_unit(p / q, sw2, sb2)
    return a_mlp**2 * q + q2, a_mlp**2 * p + p2


# --------------------------------------------------------------------------- attention


@pytest.mark.parametrize("q, p", [(1.0, 0.0), (1.0, 0.3), (2.0, 0.6), (0.5, 0.1), (3.0, 2.9)])
@pytest.mark.parametrize("beta", [0.2, 1.0, 1.6, 3.0, 10.0])
def test_softmax_attention_is_result_1(q, p, beta):
    out = B.attention(q, p, beta, None)
    y = _y2_ref(beta, q, p)
    assert float(out.q) == pytest.approx(p + (q - p) * y, abs=1e-12)
    assert float(out.p) == pytest.approx(p, abs=1e-12)
    assert float(out.y2) == pytest.approx(y, abs=1e-12)
    assert bool(out.condensed) == (beta > math.sqrt(2 / (q * (q - p))))
    assert float(out.beta_c) == pytest.approx(math.sqrt(2 / (q * (q - p))), rel=1e-12)
    # asymptotic with a seq_len (non-causal) is the same theory
    out2 = B.attention(q, p, beta, 512, finite_T=False)
    assert float(out2.q) == pytest.approx(float(out.q), abs=1e-12)


@pytest.mark.parametrize("q, p, beta", [(1.0, 0.2, 3.0), (2.0, 0.5, 1.0), (1.0, 0.5, 1.0)])
def test_centred_attention_has_no_common_component(q, p, beta):
    out = B.attention(q, p, beta, None, kind="centred")
    y = _y2_ref(beta, q, p)
    assert float(out.q) == pytest.approx((q - p) * y, abs=1e-12)
    assert float(out.p) == 0.0


def test_attention_kind_error():
    with pytest.raises(ValueError, match="kind"):
        B.attention(1.0, 0.2, 1.0, None, kind="linear")


def test_attention_negative_beta_raises():
    with pytest.raises(ValueError):
        B.attention(1.0, 0.3, -1.0, None)


# --------------------------------------------------------------------------- simple pieces


def test_value_residual_layernorm():
    qv, pv = B.value(2.0, 0.5, 0.3, 0.01)
    assert (float(qv), float(pv)) == pytest.approx((0.61, 0.16))
    qr, pr = B.residual(1.0, 0.2, 0.5, 0.1, 2.0)
    assert (float(qr), float(pr)) == pytest.approx((4.5, 0.9))
    ql, pl = B.layernorm(4.0, 1.0)
    assert float(ql) == 1.0 and float(pl) == 0.25


# --------------------------------------------------------------------------- whole blocks

PARAMS = [
    # beta, a_sa, a_mlp, sv2, sbv2, sw2, sb2, rho
    (0.5, 1.0, 1.0, 0.2, 4e-4, 0.2, 4e-4, 0.03),
    (3.0, 1.0, 1.0, 0.2, 4e-4, 0.2, 4e-4, 0.03),
    (2.0, 0.7, 1.3, 1.0, 0.0, 0.5, 1e-2, 0.4),
    (1.8, 2.0, 0.5, 0.6, 0.1, 1.5, 0.0, 0.0),
    (5.0, 0.0, 1.0, 0.2, 4e-4, 0.2, 4e-4, 0.9),
]


@pytest.mark.parametrize("beta, a_sa, a_mlp, sv2, sbv2, sw2, sb2, rho", PARAMS)
@pytest.mark.parametrize("attention", ["softmax", "centred"])
def test_post_ln_block_matches_reference(beta, a_sa, a_mlp, sv2, sbv2, sw2, sb2, rho, attention):
    if attention == "centred" and a_sa == 0.0:
        pytest.skip("GC post-LN with α_SA = 0 normalises a vanishing vector (the paper, arXiv 2505.24333)")
    spec = Spec(beta=beta, alpha_sa=a_sa, alpha_mlp=a_mlp, sigma_v2=sv2, sigma_bv2=sbv2, sigma_w2=sw2,
                sigma_b2=sb2, attention=attention)
    out = B.block(1.0, rho, spec, finite_T=False)
    ref = post_ln_block_ref(rho, beta, a_sa, a_mlp, sv2, sbv2, sw2, sb2, centred=attention == "centred")
    assert float(out.q) == pytest.approx(1.0)
    assert float(out.p) == pytest.approx(ref, abs=1e-10)


@pytest.mark.parametrize("beta, a_sa, a_mlp, sv2, sbv2, sw2, sb2, rho", PARAMS)
@pytest.mark.parametrize("q", [1.0, 3.7])
@pytest.mark.parametrize("attention", ["softmax", "centred"])
def test_pre_ln_block_matches_reference(beta, a_sa, a_mlp, sv2, sbv2, sw2, sb2, rho, q, attention):
    spec = Spec(norm="pre", beta=beta, alpha_sa=a_sa, alpha_mlp=a_mlp, sigma_v2=sv2, sigma_bv2=sbv2,
                sigma_w2=sw2, sigma_b2=sb2, attention=attention)
    out = B.block(q, rho * q, spec, finite_T=False)
    rq, rp = pre_ln_block_ref(q, rho * q, beta, a_sa, a_mlp, sv2, sbv2, sw2, sb2, centred=attention == "centred")
    assert float(out.q) == pytest.approx(rq, rel=1e-10)
    assert float(out.p) == pytest.approx(rp, rel=1e-10, abs=1e-14)


def test_pre_ln_attention_sees_layernormed_input():
    # q = 4, ρ = 0.5: the buggy β_c uses q(q − p) = 8 (β_c = 0.5), the correct one 1 − ρ (β_c = 2)
    spec = Spec(norm="pre", beta=1.0)
    out = B.block(4.0, 2.0, spec, finite_T=False)
    assert not bool(out.attn.condensed)
    assert float(out.attn.y2) == 0.0
    assert float(out.attn.beta_c) == pytest.approx(2.0)


def test_pre_ln_scale_is_consistent():
    # storing the stream as (q, p)/scale: block(q/s, p/s, scale=s) == block(q, p)/s
    spec = Spec(norm="pre", beta=2.5, alpha_sa=1.3)
    s = 1e6
    a = B.block(3.0, 1.2, spec, finite_T=False)
    b = B.block(3.0 / s, 1.2 / s, spec, finite_T=False, scale=s)
    assert float(b.q) * s == pytest.approx(float(a.q), rel=1e-12)
    assert float(b.p) * s == pytest.approx(float(a.p), rel=1e-12)


def test_post_ln_block_never_decreases_rho():
    # the paper, arXiv 2505.24333: one post-LN block never decreases ρ (ReLU, σ_b² > 0)
    rhos = np.linspace(0, 1, 21)
    betas = np.array([0.1, 1.0, 2.0, 5.0, 50.0])[:, None]
    spec = Spec(beta=betas, rho0=0.0)
    out = B.block(1.0, rhos[None, :], spec, finite_T=False)
    assert np.all(np.asarray(out.p) >= rhos[None, :] - 1e-12)


@settings(max_examples=40, deadline=None)
@given(beta=st.floats(1e-3, 1e3), rho=st.floats(0, 1), a=st.floats(0, 1e3), am=st.floats(0, 1e3),
       norm=st.sampled_from(["post", "pre"]), attention=st.sampled_from(["softmax", "centred"]),
       q=st.floats(1e-3, 1e3))
def test_fuzz_block_finite(beta, rho, a, am, norm, attention, q):
    spec = Spec(beta=beta, alpha_sa=a, alpha_mlp=am, norm=norm, attention=attention)
    qin = 1.0 if norm == "post" else q
    out = B.block(qin, rho * qin, spec, finite_T=False)
    qo, po = float(out.q), float(out.p)
    assert math.isfinite(qo) and math.isfinite(po)
    assert qo > 0
    assert -1e-12 <= po <= qo * (1 + 1e-9)
