"""Spec: validation (field name + range in the message), broadcasting grids, immutability, helpers,
and the β ↔ init-std conversions (digest §1)."""

import dataclasses
import json
import math

import numpy as np
import pytest

from sigprop.spec import Spec, beta_from_std, std_from_beta

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
    # digest §1 convention: BERT-base init std 0.02, width 768, T=512 -> β = 0.02²·768/sqrt(ln 512)
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
