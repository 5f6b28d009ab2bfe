"""The real-architecture pieces of the torch twin, each against an independent oracle (issue 12).

Oracles are written out here: closed-form Gaussian kernels (ReLU arc-cosine, identity), numpy Gauss–Hermite
quadrature, complex-number rotations for RoPE, explicit index counting for windows, hand-written block
formulas with the module's own weights, and HuggingFace ``transformers`` models (Llama, GPT-NeoX, Mistral)
loaded with the twin's weights. Nothing here calls :mod:`sigprop.theory`.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sigprop import Spec  # noqa: E402
from sigprop.nn import (  # noqa: E402
    Block,
    GainControlledAttention,
    GatedMLP,
    Rotary,
    SelfAttention,
    TransformerStack,
    allowed_keys,
    init_weights,
    make_norm,
    rope_dims,
)


def _tokens(T, d, rho, gen, q=1.0):
    """``T`` tokens with |x_t|²/d = q exactly and overlap ≈ ρ q (shared direction + i.i.d. parts), float64."""
    u = torch.randn(1, d, generator=gen, dtype=torch.float64)
    z = torch.randn(T, d, generator=gen, dtype=torch.float64)
    x = math.sqrt(rho) * u + math.sqrt(1 - rho) * z
    return x * math.sqrt(q * d) / x.norm(dim=-1, keepdim=True)


# ------------------------------------------------------------------------------------------- gated MLP
def _relu_kernel(v, c):
    """E[relu(a) relu(b)] for (a, b) centred Gaussian, Var = v each, Cov = c (arc-cosine kernel)."""
    cos = np.clip(c / v, -1.0, 1.0)
    th = np.arccos(cos)
    return v / (2 * np.pi) * (np.sin(th) + (np.pi - th) * cos)


def _gauss_kernel(phi, v, c, n=80):
    """E[φ(a) φ(b)] by a tensor Gauss–Hermite rule (numpy), (a, b) as in :func:`_relu_kernel`."""
    x, w = np.polynomial.hermite_e.hermegauss(n)
    w = w / w.sum()
    z1, z2 = np.meshgrid(x, x, indexing="ij")
    ww = np.outer(w, w)
    r = np.clip(c / v, -1.0, 1.0)
    a = math.sqrt(v) * z1
    b = math.sqrt(v) * (r * z1 + math.sqrt(1 - r * r) * z2)
    return float((ww * phi(a) * phi(b)).sum())


def _silu(x):
    return x / (1 + np.exp(-x))


def _gelu(x):
    from scipy.special import erf

    return 0.5 * x * (1 + erf(x / math.sqrt(2)))


@pytest.mark.parametrize(
    "name,phi_torch,kernel",
    [
        ("relu", torch.relu, _relu_kernel),
        ("identity", lambda x: x, lambda v, c: c),
        ("swiglu", None, lambda v, c: _gauss_kernel(_silu, v, c)),
        ("geglu", None, lambda v, c: _gauss_kernel(_gelu, v, c)),
    ],
)
def test_gated_mlp_second_moments_product_kernel(name, phi_torch, kernel):
    """Gate and up projections are independent: for tokens with overlaps (q, p),
    ``E y_t·y_s/d = σ_w,out² κ_φ(v, c) · c + σ_b²`` with ``v = σ_w² q + σ_b²``, ``c = σ_w² p + σ_b²``
    (``c = v`` on the diagonal). d = 128, hidden 2048, T = 64, 8 seeds; measured seed-to-seed s.d. of the
    diagonal mean ≈ 2 % (0.016 at 0.42), of the off-diagonal mean ≈ 0.03, so the 8-seed means have s.e.
    ≈ 0.006 and 0.011: tolerances 0.03 (> 4σ) and 0.05 (> 4σ). Dropping the gate (a plain φ-MLP,
    κ_φ(c) instead of κ_φ(c)·c) would move the diagonal by ≥ 0.2."""
    d, hid, T, sw2, sw2o, sb2 = 128, 2048, 64, 0.7, 1.3, 0.05
    spec = Spec(width=d, sigma_w2=sw2, sigma_w2_out=sw2o, sigma_b2=sb2)
    diag, off, diag_want, off_want = [], [], [], []
    for seed in range(8):
        m = GatedMLP(d, hid, phi_torch if phi_torch is not None else name).double()
        init_weights(m, spec, torch.Generator().manual_seed(seed))
        x = _tokens(T, d, 0.4, torch.Generator().manual_seed(100 + seed))
        Gx = x @ x.T / d
        p_in = ((Gx.sum() - Gx.trace()) / (T * (T - 1))).item()
        with torch.no_grad():
            y = m(x)
        G = y @ y.T / d
        diag.append(G.diagonal().mean().item())
        off.append(((G.sum() - G.trace()) / (T * (T - 1))).item())
        v, c = sw2 + sb2, sw2 * p_in + sb2
        diag_want.append(sw2o * kernel(v, v) * v + sb2)
        off_want.append(sw2o * kernel(v, c) * c + sb2)
    assert np.mean(diag) == pytest.approx(np.mean(diag_want), abs=0.03)
    assert np.mean(off) == pytest.approx(np.mean(off_want), abs=0.05)


def test_gated_mlp_structure_and_init():
    """Attributes, the formula ``W₂(φ(W_g x + b_g) ⊙ (W_u x + b_u)) + b₂`` with the module's own weights, and
    the init stds: 256×1024 entries per matrix (s.e. of the std 0.14 %), tolerance 2 % (> 10σ); W₂ uses
    σ_w,out²/hidden, which differs from σ_w²/hidden by a factor 2 here."""
    d, hid = 256, 1024
    spec = Spec(width=d, activation="swiglu", sigma_w2=0.5, sigma_w2_out=1.0, sigma_b2=0.01, mlp_ratio=4.0)
    m = TransformerStack(spec.replace(depth=2), seed=0)
    mlp = m.blocks[0].mlp
    assert isinstance(mlp, GatedMLP) and mlp.gate.out_features == hid and mlp.fc2.in_features == hid
    W = lambda name: torch.cat([getattr(b.mlp, name).weight.flatten() for b in m.blocks])  # noqa: E731
    assert W("gate").std().item() == pytest.approx(math.sqrt(0.5 / d), rel=0.02)
    assert W("up").std().item() == pytest.approx(math.sqrt(0.5 / d), rel=0.02)
    assert W("fc2").std().item() == pytest.approx(math.sqrt(1.0 / hid), rel=0.02)
    x = torch.randn(3, d)
    want = mlp.fc2(torch.nn.functional.silu(mlp.gate(x)) * mlp.up(x))
    assert torch.allclose(mlp(x), want)
    geglu = GatedMLP(8, 16, "geglu")
    y = torch.randn(2, 8)
    assert torch.allclose(geglu(y), geglu.fc2(torch.nn.functional.gelu(geglu.gate(y)) * geglu.up(y)))
    with pytest.raises(ValueError, match="GatedMLP"):
        GatedMLP(8, 16, "relu")


def test_sigma_w2_out_sets_plain_mlp_output_weights():
    d = 256
    m = TransformerStack(Spec(depth=2, width=d, sigma_w2=0.5, sigma_w2_out=2.0), seed=0)
    w2 = torch.cat([b.mlp.fc2.weight.flatten() for b in m.blocks])
    assert w2.std().item() == pytest.approx(math.sqrt(2.0 / d), rel=0.02)  # 131 072 entries: s.e. 0.2 %


# ----------------------------------------------------------------------------------------------- RoPE
def test_rope_matches_complex_rotation_and_keeps_norms():
    """Oracle: pair dimension i with i + r/2 as the complex number z = x_i + i x_{i+r/2} and multiply by
    exp(i t θ_i), θ_i = theta^{−2i/r}; dimensions ≥ r pass through. Rotations keep every norm."""
    dh, T, theta = 16, 9, 100.0
    for fraction in (1.0, 0.25, 0.375):
        rot = Rotary(dh, fraction, theta)
        r = rope_dims(dh, fraction)
        assert r == rot.r == round(dh * fraction)
        x = torch.randn(2, 3, T, dh, dtype=torch.float64)
        y = rot(x)
        half = r // 2
        t = torch.arange(T, dtype=torch.float64)[:, None]
        freqs = theta ** (-2.0 * torch.arange(half, dtype=torch.float64) / r)
        z = torch.complex(x[..., :half], x[..., half:r]) * torch.exp(1j * t * freqs)
        assert torch.allclose(y[..., :half], z.real, atol=1e-12)
        assert torch.allclose(y[..., half:r], z.imag, atol=1e-12)
        assert torch.equal(y[..., r:], x[..., r:])
        assert torch.allclose(y.norm(dim=-1), x.norm(dim=-1), atol=1e-12)
    assert rope_dims(64, 0.25) == 16 and rope_dims(10, 0.25) == 2  # HF's int(d_h f)
    with pytest.raises(ValueError, match="even"):
        rope_dims(10, 0.3)  # r = 3: HF would rotate 4 dimensions with frequencies for 3


def test_rope_dot_product_depends_only_on_position_difference():
    """With the same q at every position and the same k at every key, (R_t q)·(R_s k) is a function of t − s."""
    dh, T = 32, 12
    rot = Rotary(dh, 1.0, 10000.0)
    q = torch.randn(dh, dtype=torch.float64).expand(1, T, dh)
    k = torch.randn(dh, dtype=torch.float64).expand(1, T, dh)
    M = (rot(q) @ rot(k).transpose(-1, -2))[0]
    for delta in range(-T + 1, T):
        diag = torch.diagonal(M, offset=-delta)  # entries with t − s = delta
        assert torch.allclose(diag, diag[0].expand_as(diag), atol=1e-10)
    assert not torch.allclose(M[0, 0], M[1, 0])  # and it does depend on t − s


# ----------------------------------------------------------------------------------------------- GQA
def test_gqa_with_kv_heads_equal_heads_is_mha():
    spec = Spec(width=32, heads=4, beta=2.0, sigma_v2=1.0, sigma_b2=0.1)
    a = SelfAttention(32, 4, causal=True).double()
    b = SelfAttention(32, 4, causal=True, kv_heads=4).double()
    init_weights(a, spec, torch.Generator().manual_seed(0))
    init_weights(b, spec, torch.Generator().manual_seed(0))
    x = torch.randn(2, 7, 32, dtype=torch.float64)
    assert torch.equal(a(x), b(x))


@pytest.mark.parametrize("kv", [1, 2])
def test_gqa_equals_mha_with_tiled_key_value_weights(kv):
    """Oracle: an MHA whose query head h uses the K/V rows of group h // (heads/kv) gives the same output."""
    d, H = 32, 4
    dh, group = d // H, H // kv
    spec = Spec(width=d, heads=H, kv_heads=kv, beta=1.5, sigma_v2=1.0, sigma_b2=0.1)
    g = SelfAttention(d, H, kv_heads=kv, rope_fraction=0.5, window=3, causal=True).double()
    init_weights(g, spec, torch.Generator().manual_seed(1))
    assert g.k.weight.shape == (kv * dh, d) and g.v.bias.shape == (kv * dh,)
    m = SelfAttention(d, H, rope_fraction=0.5, window=3, causal=True).double()
    idx = torch.cat([torch.arange(h // group * dh, (h // group + 1) * dh) for h in range(H)])
    with torch.no_grad():
        m.q.weight.copy_(g.q.weight)
        m.k.weight.copy_(g.k.weight[idx])
        m.v.weight.copy_(g.v.weight[idx])
        m.v.bias.copy_(g.v.bias[idx])
    x = torch.randn(2, 9, d, dtype=torch.float64)
    assert torch.allclose(g(x), m(x), atol=1e-12)


def test_gqa_init_keeps_beta_convention():
    """W_K of a GQA layer has the same per-entry std sqrt(β)(ln T)^{1/4}/sqrt(d) as W_Q (16 384 entries:
    s.e. 0.55 %, tolerance 3 %)."""
    d, T, beta = 256, 128, 1.3
    spec = Spec(width=d, heads=8, kv_heads=2, seq_len=T, beta=beta, depth=1)
    a = TransformerStack(spec, seed=0).blocks[0].attn
    want = math.sqrt(beta) * math.log(T) ** 0.25 / math.sqrt(d)
    assert a.k.weight.shape == (64, d)
    assert a.k.weight.std().item() == pytest.approx(want, rel=0.03)
    assert a.q.weight.std().item() == pytest.approx(want, rel=0.03)


# -------------------------------------------------------------------------------------------- windows
@pytest.mark.parametrize("T,W", [(10, 3), (10, 1), (10, 10), (7, 20)])
def test_window_mask_counts(T, W):
    """Causal: row t (1-based) sees min(t, W) keys, the most recent ones; non-causal: the band
    −⌊(W−1)/2⌋ ≤ s − t ≤ ⌈(W−1)/2⌉ clipped at the ends (W keys in the interior)."""
    m = allowed_keys(T, causal=True, attention_mask=None, window=W)[0, 0]
    for t in range(1, T + 1):
        row = m[t - 1]
        assert int(row.sum()) == min(t, W)
        assert row[max(0, t - W): t].all()
    m2 = allowed_keys(T, causal=False, attention_mask=None, window=W)[0, 0]
    for t in range(T):
        lo, hi = t - (W - 1) // 2, t + W - 1 - (W - 1) // 2
        assert [s for s in range(T) if m2[t, s]] == list(range(max(lo, 0), min(hi, T - 1) + 1))
        if lo >= 0 and hi < T:
            assert int(m2[t].sum()) == W
    pad = torch.tensor([[1] * T, [1] * (T - 2) + [0, 0]])
    m3 = allowed_keys(T, causal=True, attention_mask=pad, window=W)
    assert int(m3[1, 0, T - 1].sum()) == max(0, min(T, W) - 2)  # the window's last 2 keys are padding


def test_windowed_centred_attention_uses_window_counts():
    """Σ_s (A_ts − 1/n_t) = 0 with n_t the windowed count: constant values give exactly zero output, and
    the fused path agrees with the explicit one (a window must not be mistaken for a plain causal mask)."""
    for causal in (True, False):
        attn = GainControlledAttention(16, 2, causal=causal, window=3)
        init_weights(attn, Spec(width=16, beta=3.0), torch.Generator().manual_seed(0))
        with torch.no_grad():
            attn.v.weight.zero_()
            attn.v.bias.copy_(torch.linspace(-1, 1, 16))
        x = torch.randn(2, 8, 16)
        assert attn(x).abs().max().item() < 1e-6
        plain = SelfAttention(16, 2, causal=causal, window=3)
        init_weights(plain, Spec(width=16, beta=3.0, sigma_v2=1.0), torch.Generator().manual_seed(1))
        ref = plain(x)
        plain.fast = True
        assert torch.allclose(plain(x), ref, atol=1e-5)


# -------------------------------------------------------------------------------------------- RMSNorm
def test_rmsnorm_output_mean_square_one_without_centring():
    x = 3.0 + 2.0 * torch.randn(4, 5, 64, dtype=torch.float64)  # mean far from 0
    rms = make_norm(64, "rmsnorm").double()
    y = rms(x)
    assert torch.allclose(y.pow(2).mean(-1), torch.ones(4, 5, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(y, x / x.pow(2).mean(-1, keepdim=True).add(1e-6).sqrt())
    assert y.mean(-1).abs().min().item() > 0.5  # no mean subtraction (LayerNorm would give 0)
    ln = make_norm(64, "layernorm").double()
    assert ln(x).mean(-1).abs().max().item() < 1e-10
    with pytest.raises(ValueError, match="norm_type"):
        make_norm(4, "batchnorm")


def test_rmsnorm_stack_uses_rmsnorm_everywhere():
    spec = Spec(depth=2, width=32, heads=2, seq_len=8, norm_type="rmsnorm")
    m = TransformerStack(spec, vocab_size=5, seed=0)
    norms = [mod for mod in m.modules() if isinstance(mod, (torch.nn.LayerNorm, torch.nn.RMSNorm))]
    assert len(norms) == 5 and all(isinstance(n, torch.nn.RMSNorm) for n in norms)
    assert norms[0].eps == 1e-6


# --------------------------------------------------------------------------------------------- blocks
def _manual_block(blk, x, spec):
    """The block formulas of docs/theory.md §3, written out with the block's own submodules."""
    a, m = blk.attn, blk.mlp
    asa, amlp = float(spec.alpha_sa), float(spec.alpha_mlp)
    if spec.block == "parallel":
        if spec.norm == "pre":
            return asa * x + a(blk.ln1(x)) + m(blk.ln2(x))
        return blk.ln1(asa * x + a(x) + m(x))
    if spec.norm == "pre":
        h = asa * x + a(blk.ln1(x))
        return amlp * h + m(blk.ln2(h))
    h = blk.ln1(asa * x + a(x))
    return blk.ln2(amlp * h + m(h))


@pytest.mark.parametrize("block", ["sequential", "parallel"])
@pytest.mark.parametrize("norm", ["pre", "post"])
@pytest.mark.parametrize("norm_type", ["layernorm", "rmsnorm"])
def test_block_matches_manual_formula(block, norm, norm_type):
    spec = Spec(width=32, heads=4, seq_len=8, block=block, norm=norm, norm_type=norm_type, alpha_sa=0.7,
                alpha_mlp=1.3, activation="geglu", causal=True, rope_fraction=0.25, kv_heads=2, window=5,
                sigma_v2=1.0, beta=2.0)
    blk = Block(spec).double()
    init_weights(blk, spec, torch.Generator().manual_seed(0))
    x = torch.randn(2, 8, 32, dtype=torch.float64)
    assert torch.allclose(blk(x), _manual_block(blk, x, spec), atol=1e-12)
    n_norms = sum(isinstance(mod, (torch.nn.LayerNorm, torch.nn.RMSNorm)) for mod in blk.modules())
    assert n_norms == (1 if (block, norm) == ("parallel", "post") else 2)


def test_parallel_differs_from_sequential():
    """Same weights, parallel vs sequential pre-LN: the MLP reads LN₂(x), not LN₂(x + SA): outputs differ."""
    base = dict(width=32, heads=2, seq_len=8, norm="pre", sigma_v2=1.0)
    par, seq = Block(Spec(block="parallel", **base)), Block(Spec(**base))
    init_weights(par, Spec(**base), torch.Generator().manual_seed(0))
    seq.load_state_dict(par.state_dict())
    x = torch.randn(1, 8, 32)
    assert not torch.allclose(par(x), seq(x), atol=1e-3)


# ------------------------------------------------------------------------------ HuggingFace equivalence
def _copy_llama(stack, hf):
    with torch.no_grad():
        for b, layer in zip(stack.blocks, hf.layers, strict=True):
            a = layer.self_attn
            for dst, src in ((a.q_proj, b.attn.q), (a.k_proj, b.attn.k), (a.v_proj, b.attn.v), (a.o_proj, b.attn.o),
                             (layer.mlp.gate_proj, b.mlp.gate), (layer.mlp.up_proj, b.mlp.up),
                             (layer.mlp.down_proj, b.mlp.fc2)):
                dst.weight.copy_(src.weight)


def _copy_neox(stack, hf, H):
    with torch.no_grad():
        for b, layer in zip(stack.blocks, hf.layers, strict=True):
            d = b.attn.d
            hs = d // H
            a = layer.attention  # fused qkv, per head [q_h, k_h, v_h]
            W = torch.stack([b.attn.q.weight.view(H, hs, d), b.attn.k.weight.view(H, hs, d),
                             b.attn.v.weight.view(H, hs, d)], 1).reshape(3 * d, d)
            a.query_key_value.weight.copy_(W)
            zero = torch.zeros(H, hs, dtype=W.dtype)
            a.query_key_value.bias.copy_(torch.stack([zero, zero, b.attn.v.bias.view(H, hs)], 1).reshape(3 * d))
            a.dense.weight.copy_(b.attn.o.weight)
            a.dense.bias.zero_()
            mlp = layer.mlp
            mlp.dense_h_to_4h.weight.copy_(b.mlp.fc1.weight)
            mlp.dense_h_to_4h.bias.copy_(b.mlp.fc1.bias)
            mlp.dense_4h_to_h.weight.copy_(b.mlp.fc2.weight)
            mlp.dense_4h_to_h.bias.copy_(b.mlp.fc2.bias)
            for ln in (layer.input_layernorm, layer.post_attention_layernorm):
                ln.weight.fill_(1.0)
                ln.bias.zero_()


def _max_layer_diff(hf, stack, x):
    got, want = [], []
    hooks = [layer.register_forward_hook(lambda m, a, o: want.append(o[0] if isinstance(o, tuple) else o))
             for layer in hf.layers]
    hooks += [b.register_forward_hook(lambda m, a, o: got.append(o)) for b in stack.blocks]
    with torch.no_grad():
        hf(inputs_embeds=x)
        stack(inputs_embeds=x)
    for h in hooks:
        h.remove()
    assert len(got) == len(want) == len(stack.blocks)
    return max((g - w).abs().max().item() for g, w in zip(got, want, strict=True))


ROPE = {"rope_type": "default", "rope_theta": 10000.0}


@pytest.mark.parametrize("arch", ["llama", "mistral", "gpt_neox"])
def test_twin_equals_huggingface_model(arch):
    """The twin with ``out_proj=True`` and zero biases *is* the HF architecture: Llama (pre-RMSNorm, SwiGLU,
    RoPE, GQA, causal), Mistral (+ sliding window 5), GPT-NeoX/Pythia (parallel pre-LN, partial RoPE 0.25,
    GELU MLP). Every layer output agrees to 1e-5 (float64; HF builds its RoPE cos/sin in float32, which
    leaves differences ≈ 5e-7 on activations of size ≈ 5). A wrong window, rotation half, group order or
    residual wiring changes the outputs by O(1)."""
    tf = pytest.importorskip("transformers")
    d, H, T = 64, 4, 16
    common = dict(depth=2, width=d, heads=H, norm="pre", causal=True, sigma_b2=0.0, seq_len=T, beta=1.0,
                  sigma_v2=1.0)
    cfg_common = dict(hidden_size=d, num_hidden_layers=2, num_attention_heads=H, max_position_embeddings=64,
                      vocab_size=10, attn_implementation="eager")
    if arch == "gpt_neox":
        spec = Spec(block="parallel", activation="gelu", mlp_ratio=2.0, rope_fraction=0.25, **common)
        hf = tf.GPTNeoXModel(tf.GPTNeoXConfig(intermediate_size=128, layer_norm_eps=1e-6, hidden_act="gelu",
                                              rope_parameters=dict(ROPE, partial_rotary_factor=0.25),
                                              attention_bias=True, use_parallel_residual=True, **cfg_common))
    else:
        kv, window = (2, None) if arch == "llama" else (1, 5)
        spec = Spec(norm_type="rmsnorm", activation="swiglu", mlp_ratio=1.5, rope_fraction=1.0, kv_heads=kv,
                    window=window, **common)
        cls, cfg = (tf.LlamaModel, tf.LlamaConfig) if arch == "llama" else (tf.MistralModel, tf.MistralConfig)
        extra = {"sliding_window": window} if window else {"attention_bias": False, "mlp_bias": False}
        hf = cls(cfg(num_key_value_heads=kv, intermediate_size=96, rms_norm_eps=1e-6, rope_parameters=dict(ROPE),
                     **extra, **cfg_common))
    hf = hf.double().eval()
    stack = TransformerStack(spec, out_proj=True, layer_norm_affine=True, dtype=torch.float64, seed=0)
    if arch == "gpt_neox":
        _copy_neox(stack, hf, H)
    else:
        _copy_llama(stack, hf)
    x = torch.randn(2, T, d, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    assert _max_layer_diff(hf, stack, x) < 1e-5
    if arch == "mistral":  # the window matters: without it the same weights give other outputs
        wide = TransformerStack(spec.replace(window=None), out_proj=True, layer_norm_affine=True,
                                dtype=torch.float64, seed=0)
        assert _max_layer_diff(hf, wide, x) > 0.1


# ------------------------------------------------------------------------------------- fuzz and names
def test_activation_names_are_the_specs():
    """The twin maps exactly the spec's plain activation names to torch functions, and builds a GatedMLP
    for exactly the spec's gated names (one list of names, owned by sigprop.spec)."""
    from sigprop import spec as spec_mod
    from sigprop.nn import ACTIVATIONS, make_mlp

    assert set(ACTIVATIONS) == set(spec_mod.ACTIVATIONS)
    for name in spec_mod.GATED:
        assert isinstance(make_mlp(4, 8, name), GatedMLP)


hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies


@hypothesis.settings(max_examples=25, deadline=None)
@hypothesis.given(
    heads_kv=st.sampled_from([(1, 1), (2, 1), (2, 2), (4, 1), (4, 2)]),
    block=st.sampled_from(["sequential", "parallel"]), norm=st.sampled_from(["pre", "post"]),
    norm_type=st.sampled_from(["layernorm", "rmsnorm"]),
    activation=st.sampled_from(["relu", "gelu", "swiglu", "geglu", "tanh"]),
    attention=st.sampled_from(["softmax", "centred"]), causal=st.booleans(),
    rope=st.sampled_from([0.0, 0.25, 0.5, 1.0]), window=st.one_of(st.none(), st.integers(1, 12)),
    beta=st.floats(0.0, 4.0), q0=st.floats(1e-4, 10.0),
)
def test_fuzz_any_spec_builds_and_runs(heads_kv, block, norm, norm_type, activation, attention, causal, rope,
                                       window, beta, q0):
    """Every combination of the new fields builds a twin whose outputs are finite and keep their shape;
    post-norm outputs have unit mean square (RMSNorm) or unit variance (LayerNorm) per token."""
    heads, kv = heads_kv
    spec = Spec(depth=2, width=32, heads=heads, kv_heads=kv, seq_len=8, block=block, norm=norm,
                norm_type=norm_type, activation=activation, attention=attention, causal=causal,
                rope_fraction=rope, window=window, beta=beta, q0=q0, sigma_v2=1.0)
    m = TransformerStack(spec, seed=0, dtype=torch.float64)
    x = _tokens(8, 32, 0.3, torch.Generator().manual_seed(0), q=q0)[None]
    with torch.no_grad():
        y = m(inputs_embeds=x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    if norm == "post":
        stat = y.pow(2).mean(-1) if norm_type == "rmsnorm" else y.var(-1, unbiased=False)
        assert torch.allclose(stat, torch.ones_like(stat), atol=1e-3)


def test_bad_twin_arguments_raise_value_error():
    with pytest.raises(ValueError, match="kv_heads"):
        SelfAttention(16, 4, kv_heads=3)
    with pytest.raises(ValueError, match="window"):
        SelfAttention(16, 4, window=0)
    with pytest.raises(ValueError, match="even"):
        TransformerStack(Spec(depth=1, width=40, heads=4, rope_fraction=0.3), seed=0)  # d_h = 10: r = 3
    with pytest.raises(ValueError, match="rope_fraction"):
        Rotary(8, 1.5)
    with pytest.raises(ValueError, match="scalar"):
        Block(Spec(beta=np.array([1.0, 2.0])))


def test_rope_stack_has_no_learned_position_table():
    """With RoPE a stack built with a vocabulary embeds tokens only (as Llama and GPT-NeoX do): no
    position table, any sequence length; without RoPE the learned table is added and bounds T."""
    base = dict(width=32, heads=4, depth=2, seq_len=16, causal=True, norm="pre")
    rope = TransformerStack(Spec(rope_fraction=1.0, **base), vocab_size=50, seed=0).eval()
    plain = TransformerStack(Spec(**base), vocab_size=50, seed=0).eval()
    assert rope.position_embedding is None and plain.position_embedding is not None
    n_rope = sum(p.numel() for p in rope.parameters())
    n_plain = sum(p.numel() for p in plain.parameters())
    assert n_plain - n_rope == 16 * 32
    ids = torch.randint(0, 50, (2, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        x = rope.embed(ids)
        assert torch.equal(x, rope.embed_norm(rope.token_embedding(ids)))
        assert torch.isfinite(rope(input_ids=ids)).all()
    with pytest.raises(ValueError, match="max_position"):
        plain.embed(ids)
