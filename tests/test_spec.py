"""Spec: validation (field name + range in the message), broadcasting grids, immutability, helpers,
and the β ↔ init-std conversions (the paper, arXiv 2505.24333)."""

import dataclasses
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sigprop.spec import ACTIVATIONS, BLOCKS, GATED, NORM_TYPES, Spec, beta_from_std, recipe, std_from_beta

# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs, field, rng",
    [
        (dict(beta=-1.0), "beta", "[0, inf)"),
        (dict(beta=float("nan")), "beta", "[0, inf)"),
        (dict(alpha_sa=-0.1), "alpha_sa", "[0, inf)"),
        (dict(alpha_mlp=-2.0), "alpha_mlp", "[0, inf)"),
        (dict(sigma_w2=0.0), "sigma_w2", "(0, inf)"),
        (dict(sigma_v2=-1e-3), "sigma_v2", "[0, inf)"),
        (dict(sigma_b2=-1.0), "sigma_b2", "[0, inf)"),
        (dict(sigma_bv2=-1.0), "sigma_bv2", "[0, inf)"),
        (dict(rho0=1.5), "rho0", "[0, 1]"),
        (dict(rho0=-0.01), "rho0", "[0, 1]"),
        (dict(q0=0.0), "q0", "(0, inf)"),
        (dict(beta=np.array([0.5, -1.0])), "beta", "[0, inf)"),
        (dict(rho0=np.array([0.1, np.inf])), "rho0", "[0, 1]"),
    ],
)
def test_numeric_field_errors_name_field_and_range(kwargs, field, rng):
    with pytest.raises(ValueError) as ei:
        Spec(**kwargs)
    msg = str(ei.value)
    assert msg.startswith(field), msg
    assert rng in msg, msg


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(depth=0), ("depth", "[1, 100000]")),
        (dict(depth=100_001), ("depth", "[1, 100000]")),
        (dict(depth=2.5), ("depth", "integer")),
        (dict(depth=True), ("depth",)),
        (dict(seq_len=1), ("seq_len", "[2,")),
        (dict(heads=0), ("heads",)),
        (dict(heads=3, width=512), ("heads", "divide", "512")),
        (dict(width=0), ("width",)),
        (dict(mlp_ratio=0), ("mlp_ratio", "(0, 64]")),
        (dict(norm="side"), ("norm", "post", "pre")),
        (dict(attention="linear"), ("attention", "softmax", "centred")),
        (dict(activation="swish"), ("activation", "relu")),
        (dict(activation=3), ("activation",)),
        (dict(beta=[]), ("beta", "empty")),
        (dict(beta="abc"), ("beta",)),
    ],
)
def test_other_field_errors(kwargs, words):
    with pytest.raises(ValueError) as ei:
        Spec(**kwargs)
    for w in words:
        assert w in str(ei.value), str(ei.value)


def test_boundary_values_are_accepted():
    s = Spec(beta=0.0, alpha_sa=0.0, alpha_mlp=0.0, sigma_v2=0.0, sigma_b2=0.0, rho0=1.0, depth=1, seq_len=2)
    assert s.beta == 0.0 and s.rho0 == 1.0 and s.depth == 1
    s = Spec(depth=100_000, rho0=0.0)
    assert s.depth == 100_000
    assert Spec(activation="ReLU").activation == "relu"
    assert Spec(heads=8, width=512).heads == 8


# --------------------------------------------------------------------------- arrays


def test_arrays_broadcast_into_shape_and_point():
    betas = np.array([0.5, 1.0, 2.0])
    alphas = np.array([0.5, 1.5])
    s = Spec(beta=betas[None, :], alpha_sa=alphas[:, None], rho0=0.1)
    assert s.shape == (2, 3)
    assert s.is_grid
    for i in range(2):
        for j in range(3):
            pt = s.point((i, j))
            assert not pt.is_grid and pt.shape == ()
            assert pt.beta == betas[j] and pt.alpha_sa == alphas[i] and pt.rho0 == 0.1
            assert pt.depth == s.depth and pt.norm == s.norm
    assert Spec().shape == () and not Spec().is_grid
    assert Spec(rho0=np.array([0.1, 0.2, 0.3])).point(1).rho0 == 0.2


def test_scalar_arrays_become_floats():
    s = Spec(beta=np.float32(2.0), rho0=np.array(0.25))
    assert isinstance(s.beta, float) and isinstance(s.rho0, float)


def test_non_broadcasting_arrays_raise_clear_error():
    # regression: the message used to be numpy's "truth value of an array ... is ambiguous"
    with pytest.raises(ValueError, match="broadcast") as ei:
        Spec(beta=np.array([1.0, 2.0]), alpha_sa=np.array([1.0, 2.0, 3.0]))
    assert "beta" in str(ei.value) and "alpha_sa" in str(ei.value)


def test_immutability_and_input_not_aliased():
    betas = np.array([0.5, 1.0])
    s = Spec(beta=betas)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.beta = 3.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        s.beta[0] = 9.0
    betas[0] = 7.0  # the caller's array is copied
    assert s.beta[0] == 0.5


def test_replace_validates_and_copies():
    s = Spec(beta=0.5, depth=10)
    t = s.replace(beta=2.0)
    assert t.beta == 2.0 and s.beta == 0.5 and t.depth == 10
    with pytest.raises(ValueError, match="rho0"):
        s.replace(rho0=2.0)


def test_to_dict_is_json_and_round_trips():
    s = Spec(beta=np.array([0.5, 1.0]), norm="pre", attention="centred", activation="tanh", rho0=0.2)
    d = s.to_dict()
    json.dumps(d)
    assert d["beta"] == [0.5, 1.0] and d["norm"] == "pre" and d["activation"] == "tanh"
    assert "_frozen_arrays" not in d
    back = Spec(**{k: (np.array(v) if isinstance(v, list) else v) for k, v in d.items()})
    np.testing.assert_array_equal(back.beta, s.beta)
    assert back.rho0 == 0.2

    def leaky(x):
        return np.where(x > 0, x, 0.1 * x)

    d2 = Spec(activation=leaky).to_dict()
    assert d2["activation"] == "leaky"
    json.dumps(d2)


def test_bias_v2_default_and_override():
    assert Spec(sigma_b2=1e-3).bias_v2 == 1e-3
    assert Spec(sigma_b2=1e-3, sigma_bv2=0.0).bias_v2 == 0.0


# --------------------------------------------------------------------------- conversions


def test_bert_base_beta():
    # the paper, arXiv 2505.24333 convention: BERT-base init std 0.02, width 768, T=512 -> β = 0.02²·768/sqrt(ln 512)
    assert beta_from_std(0.02, width=768, seq_len=512) == pytest.approx(0.123, abs=5e-4)


@pytest.mark.parametrize("beta", [1e-3, 0.1, 0.5, 1.0, math.sqrt(2), 3.0, 50.0])
@pytest.mark.parametrize("width, seq_len", [(64, 2), (512, 512), (768, 100_000)])
def test_beta_std_round_trip(beta, width, seq_len):
    std = std_from_beta(beta, width=width, seq_len=seq_len)
    assert std == pytest.approx(math.sqrt(beta) * math.log(seq_len) ** 0.25 / math.sqrt(width))
    assert beta_from_std(std, width=width, seq_len=seq_len) == pytest.approx(beta, rel=1e-12)


def test_init_std_qk_matches_conversion():
    s = Spec(beta=0.7, width=256, seq_len=1024, heads=4)
    assert s.init_std_qk == pytest.approx(std_from_beta(0.7, width=256, seq_len=1024))
    with pytest.raises(ValueError):
        _ = Spec(beta=np.array([1.0, 2.0])).init_std_qk


@pytest.mark.parametrize(
    "call",
    [
        lambda: beta_from_std(0.0, width=10, seq_len=10),
        lambda: beta_from_std(-0.1, width=10, seq_len=10),
        lambda: beta_from_std(float("nan"), width=10, seq_len=10),
        lambda: beta_from_std(0.02, width=0, seq_len=10),
        lambda: beta_from_std(0.02, width=10, seq_len=1),
        lambda: std_from_beta(-1.0, width=10, seq_len=10),
    ],
)
def test_conversion_errors(call):
    with pytest.raises(ValueError):
        call()


# --------------------------------------------------------------------------- fuzz: fields for real architectures

_FINITE_POS = st.floats(1e-6, 1e6, allow_nan=False, allow_infinity=False)


@st.composite
def _real_arch(draw):
    heads = draw(st.sampled_from([1, 2, 4, 8, 16]))
    kv = draw(st.none() | st.sampled_from([k for k in (1, 2, 4, 8, 16) if heads % k == 0]))
    name = draw(st.sampled_from(ACTIVATIONS + tuple(GATED)))
    return dict(
        heads=heads, width=64 * heads, kv_heads=kv,
        activation=draw(st.sampled_from([name, name.upper(), name.title()])),
        block=draw(st.sampled_from(BLOCKS)), norm_type=draw(st.sampled_from(NORM_TYPES)),
        norm=draw(st.sampled_from(["post", "pre"])),
        rope_fraction=draw(st.floats(0.0, 1.0)), rope_theta=draw(st.floats(1.0, 1e12)),
        window=draw(st.none() | st.integers(1, 10**15)), sigma_w2_out=draw(st.none() | _FINITE_POS),
        q0=draw(_FINITE_POS), causal=draw(st.booleans()),
    )


@settings(max_examples=200, deadline=None)
@given(kw=_real_arch())
def test_fuzz_real_architecture_fields_construct(kw):
    s = Spec(**kw)
    assert s.activation == kw["activation"].lower() and s.gated == (s.activation in GATED)
    assert (s.block, s.norm_type, s.window, s.kv_heads) == (kw["block"], kw["norm_type"], kw["window"], kw["kv_heads"])
    assert s.rope_fraction == kw["rope_fraction"] and s.rope_theta == kw["rope_theta"]
    assert s.n_kv_heads == (kw["kv_heads"] or kw["heads"]) and s.heads % s.n_kv_heads == 0
    assert s.w2_out == (kw["sigma_w2_out"] if kw["sigma_w2_out"] is not None else s.sigma_w2)
    assert math.isfinite(s.w2_out) and s.w2_out > 0 and math.isfinite(s.q0) and s.q0 > 0
    assert Spec(**json.loads(json.dumps(s.to_dict()))) == s  # JSON round trip
    subs = recipe(s)
    assert [b for sub in subs for b in sub.branches] == ["attn", "mlp"]
    assert len(subs) == (1 if s.block == "parallel" else 2)
    assert all(sub.norm_in == (s.norm == "pre") and sub.norm_out == (s.norm == "post") for sub in subs)


_NOT_FINITE = st.sampled_from([float("nan"), float("inf"), -float("inf")])


def _bad_text(allowed):
    return st.text(min_size=0, max_size=12).filter(lambda t: t.lower() not in allowed and t not in allowed)


_BAD = {
    "rope_fraction": st.floats(max_value=-1e-9, allow_nan=False) | st.floats(min_value=1.0 + 1e-9) | _NOT_FINITE
    | st.just(True) | st.just("0.5"),
    "rope_theta": st.floats(max_value=1.0 - 1e-9, allow_nan=False) | st.floats(min_value=1.01e12) | _NOT_FINITE,
    "kv_heads": st.integers(max_value=0) | st.integers(min_value=9) | st.sampled_from([3, 5, 6, 7, 2.0, True, "2"]),
    "window": st.integers(max_value=0) | st.sampled_from([2.5, True, "8", 10**16]),
    "sigma_w2_out": st.floats(max_value=0.0, allow_nan=False) | _NOT_FINITE | st.just("x"),
    "q0": st.floats(max_value=0.0, allow_nan=False) | _NOT_FINITE,
    "block": _bad_text(BLOCKS),
    "norm_type": _bad_text(NORM_TYPES),
    "activation": _bad_text(ACTIVATIONS + tuple(GATED)),
}


@settings(max_examples=300, deadline=None)
@given(data=st.data(), field=st.sampled_from(sorted(_BAD)))
def test_fuzz_out_of_domain_values_name_the_field(data, field):
    value = data.draw(_BAD[field])
    with pytest.raises(ValueError) as ei:
        Spec(heads=8, width=512, **{field: value})  # kv_heads must divide 8: 3, 5, 6, 7 and ≥ 9 do not
    assert str(ei.value).startswith(field), str(ei.value)
