"""sigprop.diagnose on randomly initialised transformers models built with library defaults (no
attn_implementation argument): β read from the init against the measured logits, the theory against the
measured curves, support levels, and the fix."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from diagnose_configs import small_configs  # noqa: E402

from sigprop.diagnose import Arch, diagnose, register_arch  # noqa: E402
from sigprop.diagnose.core import _theory_gaps, predicted_rows  # noqa: E402
from sigprop.diagnose.fix import apply, fixed_block  # noqa: E402
from sigprop.spec import Spec  # noqa: E402

CONFIGS = small_configs()
T = transformers


def theory_has(field: str, value) -> bool:
    """Whether this installation's theory honours a Spec field (it may land from the theory branch)."""
    spec = Spec(depth=2, norm="pre", activation="gelu", beta=0.5, sigma_w2=0.2, q0=0.01, seq_len=64, width=64)
    try:
        _, gaps = _theory_gaps(spec.replace(**{field: value}))
    except ValueError:
        return False
    return not gaps


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_within_row_logit_variance(name):
    """Measured within-row variance of the attention logits (from ln A) over its prediction
    β² ln T (1 − c̄ ρ̄_keys), with β read from the config's init and ρ̄_keys the measured overlap of the keys
    each row sees: in [0.85, 1.15] averaged over the 4 layers (2 seeds × 2 sequences; one layer's
    realisation of W_Q, W_K fluctuates by ~6% at d_h = 64, H = 4), each layer in [0.75, 1.25]."""
    d = diagnose(CONFIGS[name], seq_len=None if name == "vit" else 64, seeds=2, batch=2)
    ratios = [r["logit_var_ratio"] for r in d.measured[1:]]
    assert len(ratios) == 4 and all(math.isfinite(x) for x in ratios)
    assert 0.85 <= float(np.mean(ratios)) <= 1.15, ratios
    assert all(0.75 <= x <= 1.25 for x in ratios), ratios


def test_bert_24_layers_fast():
    """BertConfig(num_hidden_layers=24) at d = 256, T = 256, 3 seeds: max |Δρ| ≤ 0.04 (the finite-width
    spread of ρ₀ — the shared token-type vector's norm, ±√(2/d) relative — is most of it)."""
    cfg = T.BertConfig(hidden_size=256, num_attention_heads=4, intermediate_size=1024, num_hidden_layers=24)
    d = diagnose(cfg, seq_len=256, seeds=3, batch=1)
    assert d.support == "exact"
    err_rho, err_ent = d.errors()
    assert err_rho <= 0.04, err_rho
    assert err_ent <= 0.005, err_ent


@pytest.mark.slow
def test_bert_24_layers_full_size():
    """The issue's acceptance: BertConfig(num_hidden_layers=24) (d = 768), T = 512, 3 seeds: max |Δρ| ≤ 0.03,
    entropy error ≤ 0.005; after the fix, measured within 0.03 of the recommended Spec's prediction."""
    cfg = T.BertConfig(num_hidden_layers=24)
    d = diagnose(cfg, seq_len=512, seeds=3, batch=1)
    err_rho, err_ent = d.errors()
    assert err_rho <= 0.03 and err_ent <= 0.005, (err_rho, err_ent)
    fixed = fixed_block(d, d.recommend(), seeds=3, batch=1)
    assert fixed["max_abs_err_rho"] <= 0.03, fixed["max_abs_err_rho"]


def test_fix_post_ln_matches_recommended_spec_and_reloads(tmp_path):
    """After recommend/apply on a post-LN BERT (d = 256, 8 layers, T = 128, 3 seeds): the fixed models'
    measured ρ is within 0.03 of the recommended Spec's prediction; the fix is visible in the weights
    (Q/K std, W_O divided by α_SA); save_pretrained → from_pretrained gives the same weights; and
    re-diagnosing the saved folder gives the recommended Spec's curve (post-LN scale invariance: α_SA = 1
    with σ_v²/α_SA² is the same map)."""
    cfg = T.BertConfig(hidden_size=256, num_attention_heads=4, intermediate_size=1024, num_hidden_layers=8)
    d = diagnose(cfg, seq_len=128, seeds=1, batch=1)
    rec = d.recommend()
    assert rec["spec"].beta == rec["beta"] and rec["alpha_sa"] > 1
    fixed = fixed_block(d, rec, seeds=3, batch=1)
    assert fixed["label"] == "trainable"
    assert fixed["max_abs_err_rho"] <= 0.03, fixed["max_abs_err_rho"]
    torch.manual_seed(0)
    model = T.BertModel(cfg).eval()
    wo_before = model.encoder.layer[0].attention.output.dense.weight.clone()
    apply(d, model, rec)
    q = model.encoder.layer[3].attention.self.query.weight
    assert float(q.detach().std()) == pytest.approx(rec["qk_std"], rel=0.02)
    torch.testing.assert_close(model.encoder.layer[0].attention.output.dense.weight, wo_before / rec["alpha_sa"])
    model.save_pretrained(tmp_path)
    back = T.BertModel.from_pretrained(tmp_path).eval()
    for (n1, p1), (n2, p2) in zip(model.state_dict().items(), back.state_dict().items(), strict=True):
        assert n1 == n2
        torch.testing.assert_close(p1, p2, rtol=0, atol=0)
    again = diagnose(str(tmp_path), seq_len=128, measure=False)  # read from the saved weights
    assert again.spec.beta == pytest.approx(rec["beta"], rel=0.03)
    assert again.spec.alpha_sa == 1.0 and again.spec.sigma_v2 == pytest.approx(d.spec.sigma_v2 / rec["alpha_sa"] ** 2, rel=0.03)
    same_start = predicted_rows(rec["spec"].replace(rho0=again.spec.rho0))  # the saved embeddings' own ρ₀
    np.testing.assert_allclose([r["rho"] for r in again.predicted], [r["rho"] for r in same_start], atol=0.01)


# ------------------------------------------------------------------------------ pre-LN α realisation
class _Attn(torch.nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.num_heads = heads
        self.q, self.k, self.v, self.o = (torch.nn.Linear(d, d, bias=False) for _ in range(4))

    def forward(self, x):
        B, n, d = x.shape
        h = self.num_heads

        def split(t):
            return t.view(B, n, h, d // h).transpose(1, 2)

        a = torch.softmax(split(self.q(x)) @ split(self.k(x)).transpose(-1, -2) / math.sqrt(d // h), -1)
        return self.o((a @ split(self.v(x))).transpose(1, 2).reshape(B, n, d))


class _Block(torch.nn.Module):
    def __init__(self, d: int, alpha: float) -> None:
        super().__init__()
        self.alpha = alpha
        self.ln1, self.ln2 = torch.nn.LayerNorm(d), torch.nn.LayerNorm(d)
        self.attn = _Attn(d, 2)
        self.fc1, self.fc2 = torch.nn.Linear(d, 2 * d), torch.nn.Linear(2 * d, d)

    def forward(self, x):
        x = self.alpha * x + self.attn(self.ln1(x))
        return self.alpha * x + self.fc2(torch.relu(self.fc1(self.ln2(x))))


class TinyPreLN(torch.nn.Module):
    def __init__(self, d: int = 32, depth: int = 3, alpha: float = 1.0) -> None:
        super().__init__()
        self.blocks = torch.nn.ModuleList(_Block(d, alpha) for _ in range(depth))

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return x


register_arch(Arch("tiny_pre_ln", ("TinyPreLN",), ("blocks",),
                   lambda config: dict(norm="pre", block="sequential", norm_type="layernorm", activation="relu",
                                       rope_fraction=0.0, rope_theta=1e4, window=None, causal=False, logit_scale=None,
                                       reasons=[]),
                   q="attn.q", k="attn.k", v="attn.v", o="attn.o", attn="attn", mlp_in="fc1", mlp_out="fc2"))


def test_pre_ln_alpha_realised_by_output_scaling():
    """A user model registered with register_arch: apply() with α_SA = α_MLP = α on the unit-skip model
    gives hidden states equal to the explicit α-skip model's divided by the running product α^k (the
    norms ignore the stream's scale), i.e. the same token cosines — checked to float precision."""
    torch.manual_seed(0)
    alpha = 1.7
    plain = TinyPreLN(alpha=1.0)
    d = diagnose(plain, seq_len=16, measure=False)
    assert d.spec.norm == "pre" and d.arch.name == "tiny_pre_ln"
    ref = TinyPreLN(alpha=alpha)
    ref.load_state_dict(plain.state_dict())
    rec = d.recommend(beta=float(d.spec.beta), alpha_sa=alpha)
    rec["spec"] = rec["spec"].replace(alpha_mlp=alpha)
    rec["qk_std"] = None  # keep W_Q, W_K: only the α part
    fixed = TinyPreLN(alpha=1.0)
    fixed.load_state_dict(plain.state_dict())
    apply(d, fixed, rec)
    x = torch.randn(2, 16, 32)
    with torch.no_grad():
        out_ref, out_fix = ref(x), fixed(x)
    # equal up to LayerNorm's ε (1e-5), which breaks its scale invariance slightly for the rescaled stream
    torch.testing.assert_close(out_fix * alpha ** (2 * 3), out_ref, rtol=1e-3, atol=1e-4)


# ------------------------------------------------------------------------------ accuracy per family
def _accuracy(cfg, T_, seeds=3, batch=2):
    """Max |Δρ| over layers, 3 seeds × 2 sequences (single models at d = 256 spread by ~0.03 in ρ)."""
    d = diagnose(cfg, seq_len=T_, seeds=seeds, batch=batch)
    return d, d.errors()


@pytest.mark.skipif(not theory_has("sigma_w2_out", 0.05), reason="this branch's theory ignores sigma_w2_out (theory branch)")
def test_gpt2_24_layers():
    """GPT-2 shape at 24 layers (d = 256, T = 128): max |Δρ| ≤ 0.04 (measured 0.0066 with 3 seeds × 2; here
    2 seeds × 1 sequence to keep the fast suite fast)."""
    cfg = T.GPT2Config(n_embd=256, n_layer=24, n_head=4)
    d, (er, ee) = _accuracy(cfg, 128, seeds=2, batch=1)
    assert er <= 0.04, er


@pytest.mark.skipif(not theory_has("block", "parallel"), reason="this branch's theory ignores parallel blocks (theory branch)")
def test_pythia_parallel():
    cfg = T.GPTNeoXConfig(hidden_size=256, num_hidden_layers=6, num_attention_heads=4, intermediate_size=1024)
    d, (er, ee) = _accuracy(cfg, 128)
    assert er <= 0.04, er


def test_t5_encoder():
    """T5 encoder (pre-RMSNorm, ReLU, logit scale 1, σ_w² = σ_w,out² = 1 at init): max |Δρ| ≤ 0.04."""
    cfg = T.T5Config(d_model=256, d_kv=64, d_ff=1024, num_layers=6, num_heads=4)
    d, (er, ee) = _accuracy(cfg, 128)
    assert d.support == "exact", d.reasons
    assert er <= 0.04, er


@pytest.mark.skipif(not theory_has("activation", "swiglu"), reason="this branch's theory has no SwiGLU kernel (theory branch)")
@pytest.mark.parametrize("family", ["llama", "mistral"])
def test_llama_mistral_approximate(family):
    cls = {"llama": T.LlamaConfig, "mistral": T.MistralConfig}[family]
    cfg = cls(hidden_size=256, num_hidden_layers=6, num_attention_heads=4, num_key_value_heads=2, intermediate_size=688)
    d, (er, ee) = _accuracy(cfg, 128)
    assert d.support == "approximate" and any("RoPE" in r for r in d.reasons)
    assert er <= 0.1, er


def test_large_configs_are_measured_by_streaming(monkeypatch):
    """Above the memory threshold the probe goes block by block (sigprop.diagnose.stream): lower the
    threshold so that a small Llama streams, and check the rows are complete and near the theory."""
    import sigprop.diagnose.core as core

    monkeypatch.setattr(core, "STREAM_BYTES", 1)
    cfg = T.LlamaConfig(hidden_size=256, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                        intermediate_size=688)
    d = diagnose(cfg, seq_len=64, seeds=1, batch=2)
    assert "stream" in d.measured[0] and [r["layer"] for r in d.measured] == [0, 1, 2, 3]
    er, ee = d.errors()
    assert er <= 0.1 and ee <= 0.02, (er, ee)
    fixed = fixed_block(d, d.recommend(), seeds=1)  # too large to build whole: theory only, with a note
    assert fixed["measured"] is None and fixed["notes"] and fixed["label"] == "trainable"


@pytest.mark.slow
def test_single_wide_head_entropy_measured():
    """One causal Llama layer with a single 1024-wide head at β = 2.27, T = 2048 (initializer_range set so
    that σ² d / √ln T = 2.27, the β of LlamaConfig(hidden_size=16384, num_attention_heads=1) at T = 4096):
    labelled entropy collapse, measured entropy / ln n within 0.01 of the theory (2 seeds)."""
    Tn = 2048
    sig = math.sqrt(2.27 * math.sqrt(math.log(Tn)) / 1024)
    cfg = T.LlamaConfig(hidden_size=1024, num_attention_heads=1, num_key_value_heads=1, intermediate_size=256,
                        num_hidden_layers=1, initializer_range=sig, vocab_size=4000)
    d = diagnose(cfg, seq_len=Tn, seeds=2, batch=1)
    assert d.spec.beta == pytest.approx(2.27, rel=1e-9) and d.label == "entropy_collapse"
    assert abs(d.measured[1]["attn_entropy_norm"] - d.predicted[1]["attn_entropy_norm"]) <= 0.01


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_centred_attention_hook(family):
    """Centred attention by hooks: with W_Q = W_K = 0 every row is uniform over the keys it sees, so
    Σ_s (A_ts − 1/n_t) v_s = 0 exactly — the output projection receives zeros (BERT: separate V; GPT-2: V
    sliced from the fused c_attn, causal running mean)."""
    cfg = {"bert": T.BertConfig(hidden_size=64, num_attention_heads=2, intermediate_size=128, num_hidden_layers=2),
           "gpt2": T.GPT2Config(n_embd=64, n_head=2, n_layer=2)}[family]
    d = diagnose(cfg, seq_len=16, measure=False)
    rec = dict(d.recommend(), attention="centred", qk_std=0.0)
    torch.manual_seed(0)
    model = (T.BertModel if family == "bert" else T.GPT2Model)(cfg).eval()
    apply(d, model, rec)
    o = model.encoder.layer[1].attention.output.dense if family == "bert" else model.h[1].attn.c_proj
    seen = {}
    o.register_forward_pre_hook(lambda m, a: seen.setdefault("x", a[0].detach().clone()))
    with torch.no_grad():
        model(input_ids=torch.randint(1, 100, (2, 16)))
    assert seen["x"].abs().max() < 1e-5


@pytest.mark.parametrize("T", [8, 64])
def test_causal_entropy_on_measured_rows(T):
    """The theory and the measurement both leave out the causal row with one key. Oracle: uniform causal
    attention, which sigprop.measure reads as exactly 1, against the theory's β → 0 limit (it read
    (T − 1)/T when the one-key row counted as 0); and the diagnose rows carry the theory's value unchanged."""
    import torch

    from sigprop.measure import attention_stats
    from sigprop.theory.propagate import propagate

    C = torch.tril(torch.ones(T, T, dtype=torch.float64))
    measured = attention_stats((C / C.sum(-1, keepdim=True))[None, None], torch.ones(1, T, dtype=torch.bool),
                               torch.ones(1, T), causal=True)["attn_entropy_norm"]
    assert measured == pytest.approx(1.0, abs=1e-12)
    uniform = Spec(depth=2, causal=True, beta=1e-4, seq_len=T, norm="pre")
    assert list(propagate(uniform, record=("entropy",)).entropy[1:]) == pytest.approx([1.0, 1.0], abs=1e-6)
    assert [r["attn_entropy_norm"] for r in predicted_rows(uniform)[1:]] == pytest.approx([measured] * 2, abs=1e-6)
    for causal in (True, False):
        spec = uniform.replace(beta=1.0, causal=causal)
        theory = propagate(spec, record=("entropy",)).entropy[1:]
        assert [r["attn_entropy_norm"] for r in predicted_rows(spec)[1:]] == pytest.approx(list(theory), rel=1e-12)
