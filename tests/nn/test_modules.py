"""Tests of the torch twin (sigprop.nn) against independent oracles: init formulas written out here,
explicit loops for attention, and closed forms derived by hand (not from sigprop.theory)."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sigprop import Spec  # noqa: E402
from sigprop.nn import (  # noqa: E402
    GainControlledAttention,
    SelfAttention,
    TransformerStack,
    init_weights,
)


def small_spec(**kw):
    base = dict(depth=2, width=32, heads=2, seq_len=16, mlp_ratio=1.0)
    base.update(kw)
    return Spec(**base)


# ------------------------------------------------------------------------------------ construction
def test_grid_spec_rejected():
    with pytest.raises(ValueError, match="scalar Spec"):
        TransformerStack(small_spec(beta=np.array([0.5, 1.0])))


def test_structure_and_shapes():
    spec = small_spec(depth=3, mlp_ratio=1.5)
    m = TransformerStack(spec, vocab_size=11, seed=0)
    assert len(m.blocks) == 3
    blk = m.blocks[0]
    assert blk.attn.probs is not None and blk.mlp.fc1.out_features == 48
    assert blk.attn.q.bias is None and blk.attn.k.bias is None and blk.attn.v.bias is not None
    assert blk.attn.o is None
    assert not any(isinstance(p, torch.nn.Parameter) for p in blk.ln1.parameters())  # no affine by default
    ids = torch.randint(0, 11, (2, 16))
    assert m(input_ids=ids).shape == (2, 16, 32)
    assert m.embed(ids).shape == (2, 16, 32)
    assert m(inputs_embeds=torch.randn(2, 5, 32)).shape == (2, 5, 32)
    with pytest.raises(ValueError):
        m(input_ids=ids, inputs_embeds=torch.randn(2, 16, 32))
    with pytest.raises(ValueError):
        TransformerStack(spec, seed=0)(input_ids=ids)  # no embeddings


def test_dtype_and_callable_activation():
    spec = small_spec(activation=lambda x: x * 0.5)
    m64 = TransformerStack(spec, seed=3, dtype=torch.float64)
    m32 = TransformerStack(spec, seed=3)
    assert m64.blocks[0].attn.q.weight.dtype == torch.float64
    # draws are made in float64 then cast: same values up to float32 rounding
    assert torch.allclose(m64.blocks[0].attn.q.weight.float(), m32.blocks[0].attn.q.weight)
    x = torch.randn(1, 16, 32, dtype=torch.float64)
    assert torch.allclose(m64(inputs_embeds=x).float(), m32(inputs_embeds=x.float()), atol=1e-4)


# ------------------------------------------------------------------------------------ initialisation
def test_init_statistics_match_paper_formulas():
    """d = 256: each weight matrix has ≥ 65 536 i.i.d. entries, so the sample std has relative standard
    error 1/sqrt(2N) ≤ 0.28 %; a 2 % tolerance is > 7σ. Biases have 256 entries (4.4 %), pooled over the
    3 layers and both MLP biases it is ≤ 2.6 %: tolerance 12 % (> 4.5σ). The MLP hidden width is 512 so
    that W_2's σ_w²/hidden differs from σ_w²/d by √2 — a swapped formula fails."""
    d, T, beta = 256, 512, 1.7
    spec = Spec(
        depth=3,
        width=d,
        heads=4,
        seq_len=T,
        mlp_ratio=2.0,
        beta=beta,
        sigma_v2=0.3,
        sigma_w2=0.5,
        sigma_b2=0.01,
        sigma_bv2=0.04,
    )
    m = TransformerStack(spec, vocab_size=1000, seed=0, out_proj=True)
    std = lambda ts: torch.cat([t.detach().flatten() for t in ts]).std().item()  # noqa: E731
    B = m.blocks
    expect_qk = math.sqrt(beta) * math.log(T) ** 0.25 / math.sqrt(d)
    for got, want in [
        (std([b.attn.q.weight for b in B]), expect_qk),
        (std([b.attn.k.weight for b in B]), expect_qk),
        (std([b.attn.v.weight for b in B]), math.sqrt(0.3 / d)),
        (std([b.attn.o.weight for b in B]), math.sqrt(1 / d)),
        (std([b.mlp.fc1.weight for b in B]), math.sqrt(0.5 / d)),
        (std([b.mlp.fc2.weight for b in B]), math.sqrt(0.5 / 512)),
        (std([m.token_embedding.weight]), 0.1),
        (std([m.position_embedding.weight]), 0.1),
    ]:
        assert got == pytest.approx(want, rel=0.02)
    assert std([b.attn.v.bias for b in B]) == pytest.approx(0.2, rel=0.12)
    assert std([b.mlp.fc1.bias for b in B] + [b.mlp.fc2.bias for b in B]) == pytest.approx(0.1, rel=0.12)
    assert abs(torch.cat([b.attn.q.weight.flatten() for b in B]).mean().item()) < 5 * expect_qk / math.sqrt(
        3 * d * d
    )
    assert spec.init_std_qk == pytest.approx(expect_qk)


def test_seed_reproducible_and_global_rng_untouched():
    spec = small_spec()
    state = torch.get_rng_state()
    a = TransformerStack(spec, vocab_size=7, seed=5)
    b = TransformerStack(spec, vocab_size=7, seed=5)
    c = TransformerStack(spec, vocab_size=7, seed=6)
    assert torch.equal(torch.get_rng_state(), state)
    for (n, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters(), strict=True):
        assert torch.equal(pa, pb), n
        assert not torch.equal(pa, pc), n
    torch.manual_seed(1)
    d1 = TransformerStack(spec)
    torch.manual_seed(1)
    d2 = TransformerStack(spec)
    assert d1.seed == d2.seed and torch.equal(d1.blocks[0].attn.q.weight, d2.blocks[0].attn.q.weight)


def test_init_weights_on_foreign_model():
    spec = small_spec(beta=2.0, seq_len=100)
    net = torch.nn.Sequential(GainControlledAttention(64, 4))
    init_weights(net, spec, torch.Generator().manual_seed(0))
    want = math.sqrt(2.0) * math.log(100) ** 0.25 / 8
    assert net[0].q.weight.std().item() == pytest.approx(want, rel=0.05)  # 4096 entries: 1.1 % s.e.


@pytest.mark.parametrize("heads", [1, 4, 8])
def test_logit_variance_independent_of_heads(heads):
    """Var(a_ts) = β² ln T for unit-norm tokens (q = 1, ρ = 0) for any head count (the paper, arXiv 2505.24333 caveat).

    For fixed weights E_x[a²] = ‖M_h‖_F² with M_h = W_Q,hᵀ W_K,h / sqrt(d_h); across weight draws this
    has relative s.d. ≈ 2/d per model (< 1 % at d = 256), and the finite token sample (B·T = 1024 rows of
    a rank-d_h quadratic form, d_h ≥ 32) adds ≲ 1.5 %; averaging 3 seeds, 5 % is > 3σ. The authors'
    /sqrt(d_h) convention would give β² H² ln T, i.e. 16× or 64× — far outside."""
    d, T, beta = 256, 512, 1.3
    spec = Spec(depth=1, width=d, heads=heads, seq_len=T, beta=beta)
    gen = torch.Generator().manual_seed(heads)
    x = torch.randn(4, 256, d, generator=gen)
    x = x * math.sqrt(d) / x.norm(dim=-1, keepdim=True)  # q = 1 exactly, ρ ≈ 0
    vals = []
    for seed in range(3):
        m = TransformerStack(spec, seed=seed)
        seen = {}
        h = m.blocks[0].attn.probs.register_forward_pre_hook(
            lambda mod, args, seen=seen: seen.update(logits=args[0])
        )
        with torch.no_grad():
            m(inputs_embeds=x)
        h.remove()
        a = seen["logits"]
        assert a.shape == (4, heads, 256, 256)
        off = ~torch.eye(256, dtype=torch.bool)
        vals.append(a[..., off].pow(2).mean().item())
    assert np.mean(vals) == pytest.approx(beta**2 * math.log(T), rel=0.05)


# ------------------------------------------------------------------------------------ attention
def _loop_attention(x, attn, key_mask, causal, centred):
    """Explicit per-(b, h, t) loop in float64, the oracle for SelfAttention."""
    B, T, d = x.shape
    H, dh = attn.heads, attn.d_head
    Wq, Wk, Wv, bv = (t.detach().double() for t in (attn.q.weight, attn.k.weight, attn.v.weight, attn.v.bias))
    out = torch.zeros(B, T, d, dtype=torch.float64)
    for b in range(B):
        for h in range(H):
            sl = slice(h * dh, (h + 1) * dh)
            for t in range(T):
                keys = [s for s in range(T) if key_mask[b, s] and (not causal or s <= t)]
                if not keys:
                    continue
                qt = Wq[sl] @ x[b, t]
                logits = [float(qt @ (Wk[sl] @ x[b, s])) / math.sqrt(dh) for s in keys]
                mx = max(logits)
                w = [math.exp(a - mx) for a in logits]
                Z = sum(w)
                for s, ws in zip(keys, w, strict=True):
                    coef = ws / Z - (1.0 / len(keys) if centred else 0.0)
                    out[b, t, sl] += coef * (Wv[sl] @ x[b, s] + bv[sl])
    return out


@pytest.mark.parametrize("centred", [False, True])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("fast", [False, True])
def test_attention_matches_explicit_loop(centred, causal, fast):
    spec = small_spec(beta=2.0, sigma_v2=1.0, sigma_b2=0.1)
    torch.manual_seed(0)
    attn = (
        GainControlledAttention(8, 2, causal=causal) if centred else SelfAttention(8, 2, causal=causal)
    ).double()
    attn.fast = fast
    init_weights(attn, spec, torch.Generator().manual_seed(1))
    x = torch.randn(3, 5, 8, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [0, 0, 1, 1, 1]])  # none, right-, left-padding
    got = attn(x, attention_mask=mask)
    want = _loop_attention(x, attn, mask.bool(), causal, centred)
    assert torch.allclose(got, want, atol=1e-10)
    got_nomask = attn(x)
    want_nomask = _loop_attention(x, attn, torch.ones(3, 5, dtype=torch.bool), causal, centred)
    assert torch.allclose(got_nomask, want_nomask, atol=1e-10)


@pytest.mark.parametrize("causal", [False, True])
def test_centred_rows_sum_to_zero(causal):
    """Σ_s (A_ts − 1/n_t) = 0: with constant values v_s = c the centred output vanishes exactly, also
    under causal and padding masks, while plain attention returns c."""
    attn = GainControlledAttention(16, 4, causal=causal)
    plain = SelfAttention(16, 4, causal=causal)
    init_weights(attn, small_spec(beta=3.0), torch.Generator().manual_seed(0))
    plain.load_state_dict(attn.state_dict())
    with torch.no_grad():
        for a in (attn, plain):
            a.v.weight.zero_()
            a.v.bias.copy_(torch.linspace(-1, 1, 16))
    x = torch.randn(2, 7, 16)
    mask = torch.tensor([[1] * 7, [1, 1, 1, 1, 0, 0, 0]])
    assert attn(x, attention_mask=mask).abs().max().item() < 1e-6
    assert torch.allclose(
        plain(x, attention_mask=mask), torch.linspace(-1, 1, 16).expand(2, 7, 16), atol=1e-6
    )


def test_padding_keys_do_not_leak():
    spec = small_spec(depth=2, causal=False)
    m = TransformerStack(spec, vocab_size=20, seed=0).eval()
    ids = torch.randint(0, 20, (1, 16))
    mask = torch.ones(1, 16)
    mask[0, 10:] = 0
    ids2 = ids.clone()
    ids2[0, 10:] = (ids2[0, 10:] + 3) % 20
    h1, h2 = m(input_ids=ids, attention_mask=mask), m(input_ids=ids2, attention_mask=mask)
    assert torch.allclose(h1[0, :10], h2[0, :10], atol=1e-6)
    assert not torch.allclose(h1[0, 10:], h2[0, 10:])


# ------------------------------------------------------------------------------------ block structure
def _unit_tokens(B, T, d, rho0, gen):
    """x_t = sqrt(ρ0) u + sqrt(1−ρ0) z_t with |u|² = d and z_t ⟂ u (so q ≈ 1 and the overlap is ρ0 up to
    the O(1/sqrt(d T)) z–z fluctuation)."""
    u = torch.randn(B, 1, d, generator=gen, dtype=torch.float64)
    u = u * math.sqrt(d) / u.norm(dim=-1, keepdim=True)
    z = torch.randn(B, T, d, generator=gen, dtype=torch.float64)
    z = z - (z * u).sum(-1, keepdim=True) / d * u
    return (math.sqrt(rho0) * u + math.sqrt(1 - rho0) * z).float()


def test_post_ln_unit_norm_pre_ln_grows():
    gen = torch.Generator().manual_seed(0)
    x = _unit_tokens(2, 16, 64, 0.1, gen)
    for norm in ("post", "pre"):
        spec = Spec(depth=6, width=64, heads=2, seq_len=16, norm=norm, sigma_v2=1.0)
        m = TransformerStack(spec, seed=0)
        qs = []
        hooks = [
            b.register_forward_hook(lambda mod, a, out, qs=qs: qs.append(out.pow(2).mean(-1)))
            for b in m.blocks
        ]
        with torch.no_grad():
            m(inputs_embeds=x)
        for h in hooks:
            h.remove()
        if norm == "post":
            for q in qs:  # every token, every block: |x_t|²/d = 1 up to the LN eps
                assert torch.allclose(q, torch.ones_like(q), atol=1e-4)
        else:
            means = [q.mean().item() for q in qs]
            assert all(b > a for a, b in zip(means[:-1], means[1:], strict=True))
            assert means[-1] > 2.0  # each block adds ≳ σ_v² q_A + MLP ≈ 0.2-1 to q


def test_zero_beta_attention_is_uniform_and_collapses_tokens():
    """β → 0 (β = 1e-4): logits have s.d. β sqrt(ln T) ≈ 2e-4, so T·A = 1 to ~1e-3 and the softmax
    branch maps every token to the same vector W_V x̄ + b_V: output cosine 1 to ~1e-6."""
    spec = Spec(depth=1, width=64, heads=2, seq_len=32, beta=1e-4)
    m = TransformerStack(spec, seed=0)
    x = torch.randn(2, 32, 64)
    seen = {}
    h1 = m.blocks[0].attn.register_forward_hook(lambda mod, a, out: seen.update(out=out))
    h2 = m.blocks[0].attn.probs.register_forward_hook(lambda mod, a, out: seen.update(A=out))
    with torch.no_grad():
        m(inputs_embeds=x)
    h1.remove(), h2.remove()
    # logit s.d. ≈ 2e-4, so T·A − 1 ≈ logit deviation: < 2e-3 covers > 5σ over 4096 entries
    assert (seen["A"] * 32 - 1).abs().max().item() < 2e-3
    y = torch.nn.functional.normalize(seen["out"].double(), dim=-1)
    cos = y @ y.transpose(1, 2)
    assert cos.min().item() > 1 - 1e-5


def _ln1_gram_ratio(model, x):
    """p/q of the post-LN state after attention + residual (ln1 output), averaged over the batch."""
    seen = {}
    h = model.blocks[0].ln1.register_forward_hook(lambda mod, a, out: seen.update(h=out.double()))
    with torch.no_grad():
        model(inputs_embeds=x)
    h.remove()
    G = seen["h"] @ seen["h"].transpose(1, 2) / x.shape[-1]
    T = x.shape[1]
    diag = torch.diagonal(G, dim1=1, dim2=2)
    off = (G.sum((1, 2)) - diag.sum(-1)) / (T * (T - 1))
    return (off / diag.mean(-1)).mean().item()


def _closed_form_rho1(rho0, T, sigma_v2, sigma_b2, alpha):
    """Uniform attention gives y_t = x̄ for all t, |x̄|²/d = q_A = ρ0 + (1−ρ0)/T and p_A = q_A; W_V random
    and independent of x makes skip and branch add in quadrature:
    ρ1 = (σ_v² q_A + σ_b² + α² ρ0) / (σ_v² q_A + σ_b² + α²)."""
    qA = rho0 + (1 - rho0) / T
    return (sigma_v2 * qA + sigma_b2 + alpha**2 * rho0) / (sigma_v2 * qA + sigma_b2 + alpha**2)


def test_one_layer_post_ln_low_beta_closed_form():
    """d = 512, T = 256, ρ0 = 0.2, σ_v² = 0.2, α_SA = 1, β = 1e-4. Dominant noise: the cross term
    2 v̄·x̄/d between the shared value vector and the common component, s.d. ≈ 2 sqrt(ρ0 σ_v² q_A / d)
    ≈ 0.008 per sequence, which moves p/q by ≈ 0.006; |v̄|²/d fluctuates by σ_v² q_A sqrt(2/d) ≈ 0.003.
    Averaging 8 sequences (independent u) gives s.d. ≈ 0.0025; LN centring adds O(1/d) = 0.002.
    Tolerance 0.012 (> 4σ); the ρ1 = 0.2315 it is tested against differs from ρ0 = 0.2 by 0.03."""
    d, T, rho0 = 512, 256, 0.2
    spec = Spec(depth=1, width=d, seq_len=T, beta=1e-4, sigma_v2=0.2, sigma_b2=4e-4, alpha_sa=1.0)
    m = TransformerStack(spec, seed=0)
    x = _unit_tokens(8, T, d, rho0, torch.Generator().manual_seed(1))
    want = _closed_form_rho1(rho0, T, 0.2, 4e-4, 1.0)
    assert want == pytest.approx(0.2315, abs=1e-4)
    assert _ln1_gram_ratio(m, x) == pytest.approx(want, abs=0.012)


def test_one_layer_centred_low_beta_leaves_state():
    """Centred attention at β → 0: A − 1/T ≈ 0, so the branch output is ~0 and ln1 returns LN(x):
    ρ stays ρ0 (only the per-token LN centring, O(1/d), and the ~1e-4 attention deviations remain)."""
    d, T, rho0 = 256, 64, 0.3
    spec = Spec(depth=1, width=d, seq_len=T, beta=1e-4, sigma_v2=1.0, attention="centred")
    m = TransformerStack(spec, seed=0)
    x = _unit_tokens(4, T, d, rho0, torch.Generator().manual_seed(2))
    seen = {}
    h = m.blocks[0].attn.register_forward_hook(lambda mod, a, out: seen.update(out=out))
    got = _ln1_gram_ratio(m, x)
    h.remove()
    assert seen["out"].abs().max().item() < 1e-3
    assert got == pytest.approx(rho0, abs=0.01)


@pytest.mark.slow
def test_one_layer_post_ln_low_beta_closed_form_large():
    """As above at d = 1024 and 32 sequences: noise s.d. ≈ 0.0009, tolerance 0.004 (> 4σ)."""
    d, T = 1024, 256
    for rho0, alpha in [(0.2, 1.0), (0.5, 0.5), (0.05, 2.0)]:
        spec = Spec(depth=1, width=d, seq_len=T, beta=1e-4, sigma_v2=0.2, sigma_b2=4e-4, alpha_sa=alpha)
        m = TransformerStack(spec, seed=1)
        x = _unit_tokens(32, T, d, rho0, torch.Generator().manual_seed(3))
        assert _ln1_gram_ratio(m, x) == pytest.approx(_closed_form_rho1(rho0, T, 0.2, 4e-4, alpha), abs=0.004)
