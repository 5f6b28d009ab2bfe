"""Theory vs torch twin for the real-architecture pieces (issue 12 acceptance), through :func:`sigprop.validate`.

Each spec is propagated by :mod:`sigprop.theory` and realised as fresh :class:`sigprop.nn.TransformerStack`
twins fed Gaussian tokens of cosine ρ₀ and scale q₀; the compared quantity is the max over layers of
|ρ_theory − ρ_measured| over all tokens (finite-T theory).

Tolerances. The measured ρ_ℓ of one twin fluctuates from seed to seed (finite width); at d = T = 256 the
largest per-layer s.d. over the cases below was 0.019–0.065 (5 seeds; 0.065 for the Pythia-like stack at
HF init, whose ρ moves little while its q grows from 4·10⁻⁴). The fast variants (d = T = 128) compare the
seed average with ``tol + 3 σ_max/sqrt(seeds)``, σ_max the largest per-layer s.d. of the run itself; the slow
ones use the issue's fixed tolerances with 5 seeds. Measured at d = T = 256, 5 seeds (finite-T theory; T = ∞
in brackets): SwiGLU pre-LN 8 layers 0.009 (0.025), GeGLU 0.012 (0.025), SwiGLU post-LN σ_w,out² = 2
0.005 (0.037), parallel pre-LN 12 layers 0.022 (0.011), pre-RMSNorm 12 layers 0.017 (0.015), post-RMSNorm
0.021 (0.017), Llama-like 16 layers at HF init 0.012 (0.094; last-50 ρ 0.015), Pythia-like 12 layers
0.020, causal post-LN β = 0.2: 0.005; pre-LN 6 layers with a window (3 seeds), causal W = 32:
0.022 (β = 1 and 2), encoder W = 65: 0.017 (β = 1), 0.020 (β = 2).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sigprop import Spec  # noqa: E402
from sigprop.spec import beta_from_std  # noqa: E402
from sigprop.validate import validate  # noqa: E402


@pytest.fixture(autouse=True)
def _threads():
    old = torch.get_num_threads()
    torch.set_num_threads(min(2, old))
    yield
    torch.set_num_threads(old)


def hf_llama(d: int, T: int, depth: int, std: float = 0.02, hidden: int | None = None) -> Spec:
    """A Llama-like stack at HuggingFace's default init (every weight N(0, std²), no biases, embeddings of std
    ``std``): β from W_Q, W_K; σ_v² = (std² d)² for W_V followed by W_O; σ_w² = std² d for W_g, W_u;
    σ_w,out² = std² d_ff for W_2; q₀ = std²."""
    hidden = hidden or round(2.6875 * d)
    s2d = std**2 * d
    return Spec(depth=depth, width=d, heads=d // 64, kv_heads=max(1, d // 128), seq_len=T, norm="pre",
                norm_type="rmsnorm", activation="swiglu", rope_fraction=1.0, causal=True, sigma_b2=0.0,
                q0=std**2, beta=beta_from_std(std, width=d, seq_len=T), sigma_v2=s2d**2, sigma_w2=s2d,
                sigma_w2_out=std**2 * hidden, mlp_ratio=hidden / d)


def pieces(d: int, T: int, depth: int) -> dict[str, Spec]:
    base = dict(width=d, seq_len=T, heads=4, beta=1.0, sigma_v2=0.5, sigma_w2=1.0, rho0=0.2)
    return {
        "swiglu": Spec(depth=depth, norm="pre", activation="swiglu", **base),
        "geglu": Spec(depth=depth, norm="pre", activation="geglu", **base),
        "swiglu_post_w2out": Spec(depth=depth, norm="post", activation="swiglu", sigma_w2_out=2.0, **base),
        "parallel_pre": Spec(depth=depth, norm="pre", block="parallel", activation="gelu", **base),
        "rmsnorm_pre": Spec(depth=depth, norm="pre", norm_type="rmsnorm", **base),
        "window_causal": Spec(depth=depth, norm="pre", causal=True, window=T // 8, **base),
        "window_encoder": Spec(depth=depth, norm="pre", window=T // 4 + 1, **base),
    }


def _check(spec: Spec, seeds: int, tol: float, *, adaptive: bool) -> float:
    pt = validate(spec, seeds=seeds, progress=False).points[0]
    assert pt.theory_note is None, pt.theory_note
    err = pt.max_error("rho")
    bound = tol + (3 * float(np.nanmax(pt.measured_std["rho_gram"])) / math.sqrt(seeds) if adaptive else 0.0)
    assert err <= bound, (err, bound, np.round(pt.theory_finite["rho"], 3), np.round(pt.measured_mean["rho_gram"], 3))
    return err


@pytest.mark.parametrize("name", ["swiglu", "geglu", "parallel_pre", "rmsnorm_pre", "window_causal", "window_encoder"])
def test_pieces_fast(name):
    """d = T = 128, 4 layers, 2 seeds: ρ within 0.03 + 3 σ_max/√2."""
    _check(pieces(128, 128, 4)[name], 2, 0.03, adaptive=True)


def test_llama_like_fast():
    """d = T = 256, 6 layers at HF init, 2 seeds: ρ within 0.05 + 3 σ_max/√2; the last-50 ρ is reported
    next to it and predicted as well. (Smaller twins are farther from the mean field here: at d = T = 128
    the error is 0.066, at d = 256, T = 128 0.041, at d = T = 256 0.012.)"""
    spec = hf_llama(256, 256, 6)
    pt = validate(spec, seeds=2, progress=False).points[0]
    sd = float(np.nanmax(pt.measured_std["rho_gram"]))
    assert pt.max_error("rho") <= 0.05 + 3 * sd / math.sqrt(2)
    sd_last = float(np.nanmax(pt.positions["rho_last"]["measured_std"]))
    assert pt.max_error("rho_last") <= 0.05 + 3 * sd_last / math.sqrt(2)


def _y2_layer1(spec: Spec, seeds: int) -> tuple[float, float, float]:
    pt = validate(spec, seeds=seeds, progress=False).points[0]
    return float(pt.theory_finite["y2"][1]), float(pt.measured_mean["attn_y2"][1]), float(pt.measured_std["attn_y2"][1])


ROPE_LAYER = dict(depth=1, width=256, seq_len=256, heads=4, beta=1.3, rho0=0.6)
LLAMA_LAYER = dict(norm="pre", norm_type="rmsnorm", activation="swiglu", kv_heads=2, causal=True)


@pytest.mark.parametrize("causal", [False, True])
def test_rope_single_layer_y2(causal):
    """β = 1.3, ρ = 0.6, full RoPE (d_h = 64, θ = 10⁴): theory Y² within 20 % of the twin's (5 seeds;
    the twin's s.d. is ≈ 0.02 on ≈ 0.13–0.21, s.e. ≈ 7 %). Measured: encoder 0.152 vs 0.134 (+14 %), Llama
    layer 0.219 vs 0.213 (+3 %). RoPE matters here: without it the twin gives 0.067 and 0.148."""
    extra = LLAMA_LAYER if causal else {}
    th, me, _ = _y2_layer1(Spec(rope_fraction=1.0, **ROPE_LAYER, **extra), 5)
    assert abs(th - me) <= 0.2 * me, (th, me)
    _, plain, _ = _y2_layer1(Spec(**ROPE_LAYER, **extra), 5)
    assert me > 1.3 * plain  # the rotation raises Y² by decorrelating the common component across keys


def test_partial_rope_single_layer_y2():
    """Pythia's rotary fraction 0.25 (c̄ ≈ 0.86): theory Y² within 20 % of the twin's (5 seeds). Measured
    0.088 vs 0.091 (−3 %); a within-row variance q(q − (1 − c̄)p) instead of q(q − c̄p) gave 0.205."""
    th, me, _ = _y2_layer1(Spec(rope_fraction=0.25, **ROPE_LAYER), 5)
    assert abs(th - me) <= 0.2 * me, (th, me)


# ---------------------------------------------------------------------------------------------- slow
@pytest.mark.slow
@pytest.mark.parametrize("name", ["swiglu", "geglu", "swiglu_post_w2out", "parallel_pre", "rmsnorm_pre",
                                  "window_causal", "window_encoder"])
def test_pieces_acceptance(name):
    """d = T = 256, 5 seeds: max |Δρ| ≤ 0.03 (SwiGLU, GeGLU, windows 8 layers; parallel pre-LN, RMSNorm 12
    layers). Windows: causal W = 32 (Mistral-like), encoder W = 65 (ModernBERT-like band ±32)."""
    depth = 12 if name in ("parallel_pre", "rmsnorm_pre") else 8
    _check(pieces(256, 256, depth)[name], 5, 0.03, adaptive=False)


@pytest.mark.slow
def test_llama_like_acceptance():
    """Llama-like 16-layer causal stack at its HF default init, d = T = 256, 5 seeds: max |Δρ| ≤ 0.05."""
    _check(hf_llama(256, 256, 16), 5, 0.05, adaptive=False)


@pytest.mark.slow
def test_causal_post_ln_acceptance():
    """Causal post-LN 6 layers, σ_v² = 1, α_SA = 0.5, β = 0.2, ρ₀ = 0.2, d = T = 256, 5 seeds: max |Δρ| ≤ 0.04
    (measured 0.005). β = 2 is tests/theory/test_causal_twin.py's (condensed causal rows, docs/theory.md §7)."""
    spec = Spec(depth=6, width=256, seq_len=256, norm="post", causal=True, beta=0.2, sigma_v2=1.0, alpha_sa=0.5,
                rho0=0.2)
    _check(spec, 5, 0.04, adaptive=False)
