"""Tests of sigprop.measure: probe statistics against explicit numpy oracles, hook hygiene, masking."""

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sigprop import Spec  # noqa: E402
from sigprop.measure import (  # noqa: E402
    HookPoints,
    Measurement,
    attention_stats,
    grad_norms,
    hook_points,
    measure,
    register_adapter,
    token_stats,
)
from sigprop.nn import TransformerStack  # noqa: E402


def stack(**kw):
    base = dict(depth=3, width=32, heads=2, seq_len=16)
    base.update(kw)
    return TransformerStack(Spec(**base), vocab_size=30, seed=0).eval()


def all_hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


# ------------------------------------------------------------------------------------ oracles
def np_cosine(X):
    n = len(X)
    vals = [
        X[i] @ X[j] / np.linalg.norm(X[i]) / np.linalg.norm(X[j])
        for i in range(n)
        for j in range(n)
        if i != j
    ]
    return float(np.mean(vals))


def np_stats(X):
    d = X.shape[1]
    G = X @ X.T / d
    n = len(X)
    q = np.mean(np.diag(G))
    p = (G.sum() - np.trace(G)) / (n * (n - 1))
    sr = np.sum(X**2) / np.linalg.norm(X, 2) ** 2
    return {"cosine": np_cosine(X), "rho_gram": p / q, "q": q, "stable_rank": sr}


def test_token_stats_match_numpy_with_padding_and_last_k():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2, 6, 5)) * rng.uniform(0.5, 2, size=(2, 6, 1)) + 0.3
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]]).bool()
    got = token_stats(torch.tensor(X), mask)
    ref = [np_stats(X[0]), np_stats(X[1, :4])]
    for k in got:
        assert got[k] == pytest.approx((ref[0][k] + ref[1][k]) / 2, rel=1e-10)
    from sigprop.measure import _selection

    sel = _selection(mask, 3)
    assert sel.tolist() == [[False, False, False, True, True, True], [False, True, True, True, False, False]]
    got3 = token_stats(torch.tensor(X), sel)
    assert got3["cosine"] == pytest.approx((np_cosine(X[0, 3:]) + np_cosine(X[1, 1:4])) / 2, rel=1e-10)


def test_attention_stats_uniform_onehot_and_causal():
    T = 8
    U = torch.full((1, 1, T, T), 1 / T)
    s = attention_stats(U, torch.ones(1, T, dtype=torch.bool), torch.ones(1, T), causal=False, spectra=True)
    assert s["attn_entropy"] == pytest.approx(math.log(T))
    assert s["attn_entropy_norm"] == pytest.approx(1.0)
    assert s["attn_y2"] == pytest.approx(1 / T)
    assert s["attn_singular_values"][0] == pytest.approx(1.0) and s["attn_singular_values"][1] < 1e-12
    eye = torch.eye(T)[None, None]
    s = attention_stats(eye, torch.ones(1, T, dtype=torch.bool), torch.ones(1, T), causal=False)
    assert s["attn_entropy"] == 0 and s["attn_entropy_norm"] == 0 and s["attn_y2"] == 1
    C = torch.tril(torch.ones(T, T))
    C = (C / C.sum(-1, keepdim=True))[None, None]  # uniform over the t visible keys
    s = attention_stats(C, torch.ones(1, T, dtype=torch.bool), torch.ones(1, T), causal=True)
    assert s["attn_entropy"] == pytest.approx(np.mean([math.log(t) for t in range(1, T + 1)]))
    assert s["attn_entropy_norm"] == pytest.approx(1.0)  # row 1 (one key) is skipped
    assert s["attn_y2"] == pytest.approx(np.mean([1 / t for t in range(1, T + 1)]))


# ------------------------------------------------------------------------------------ measure()
def test_measure_table_shape_and_serialisation():
    m = stack(depth=3)
    ids = torch.randint(0, 30, (2, 16))
    r = measure(m, input_ids=ids, spectra=3)
    assert isinstance(r, Measurement) and len(r) == 4
    assert [row["layer"] for row in r.layers] == [0, 1, 2, 3]
    assert math.isnan(r.layers[0]["attn_entropy"]) and r.layers[0]["attn_singular_values"] is None
    for row in r.layers[1:]:
        assert 0 < row["attn_entropy_norm"] <= 1 + 1e-9
        assert 1 / 16 - 1e-9 <= row["attn_y2"] <= 1
        assert len(row["attn_singular_values"]) == 3
    for row in r.layers:
        assert row["q"] == pytest.approx(1.0, abs=1e-4)  # embedding LN, then post-LN blocks
        assert 1 <= row["stable_rank"] <= 16
    json.dumps(r.to_dict())
    df = r.to_frame()
    assert list(df.index) == [0, 1, 2, 3] and "rho_gram" in df.columns
    assert r["cosine"] == list(df["cosine"])


def test_layer_states_match_manual_forward():
    """Layer ℓ is the output of block ℓ; layer 0 the embedding-LN output."""
    m = stack(depth=2, norm="pre")
    ids = torch.randint(0, 30, (2, 16))
    r = measure(m, input_ids=ids)
    with torch.no_grad():
        h = m.embed(ids)
        states = [h]
        for b in m.blocks:
            h = b(h)
            states.append(h)
    full = torch.ones(2, 16, dtype=torch.bool)
    for row, X in zip(r.layers, states, strict=True):
        ref = token_stats(X, full)
        for k in ref:
            assert row[k] == pytest.approx(ref[k], rel=1e-6)


@pytest.mark.parametrize("attention", ["softmax", "centred"])
@pytest.mark.parametrize("fast", [False, True])
def test_probes_do_not_change_outputs_and_hooks_removed(attention, fast):
    m = stack(attention=attention, causal=True)
    for b in m.blocks:
        b.attn.fast = fast
    ids = torch.randint(0, 30, (2, 16))
    mask = torch.ones(2, 16)
    mask[1, 12:] = 0
    with torch.no_grad():
        before = m(input_ids=ids, attention_mask=mask)
    r = measure(m, input_ids=ids, attention_mask=mask, spectra=True)
    with torch.no_grad():
        after = m(input_ids=ids, attention_mask=mask)
    assert all_hooks(m) == 0
    if fast:  # probes force the explicit softmax path: same up to float rounding
        assert torch.allclose(r.output, before, atol=1e-5)
    else:
        assert torch.equal(r.output, before)
    assert torch.equal(after, before)


def test_hooks_removed_on_exception():
    m = stack()
    with pytest.raises(ValueError):
        measure(m, inputs_embeds=torch.randn(1, 16, 7))  # wrong width
    assert all_hooks(m) == 0

    def boom(module, args, out):
        raise RuntimeError("boom")

    h = m.blocks[1].register_forward_hook(boom)
    with pytest.raises(RuntimeError):
        measure(m, inputs_embeds=torch.randn(1, 16, 32))
    h.remove()
    assert all_hooks(m) == 0


def test_identical_tokens_have_cosine_one():
    m = stack()
    x = torch.randn(1, 1, 32).expand(2, 16, 32).contiguous()
    r = measure(m, inputs_embeds=x)
    for row in r.layers:  # identical inputs stay identical through every block
        assert row["cosine"] == pytest.approx(1.0, abs=1e-6)
        assert row["rho_gram"] == pytest.approx(1.0, abs=1e-6)
        assert row["stable_rank"] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_padding_excluded(causal):
    m = stack(causal=causal)
    ids = torch.randint(0, 30, (2, 16))
    mask = torch.ones(2, 16, dtype=torch.long)
    mask[0, 10:] = 0
    mask[1, 13:] = 0
    ids2 = ids.clone()
    ids2[mask == 0] = (ids2[mask == 0] + 7) % 30
    a = measure(m, input_ids=ids, attention_mask=mask, spectra=True)
    b = measure(m, input_ids=ids2, attention_mask=mask, spectra=True)
    for ra, rb in zip(a.layers, b.layers, strict=True):
        for k, v in ra.items():
            if isinstance(v, list):
                assert np.allclose(v, rb[k], atol=1e-6)
            elif not (isinstance(v, float) and math.isnan(v)):
                assert v == pytest.approx(rb[k], abs=1e-6), k
    # and the mask matters: without it the pad tokens enter the statistics
    c = measure(m, input_ids=ids2)
    assert abs(c.layers[2]["cosine"] - a.layers[2]["cosine"]) > 1e-4


def test_last_k_equals_truncated_inputs_at_layer0():
    m = stack()
    x = torch.randn(2, 16, 32)
    r = measure(m, inputs_embeds=x, last_k=5)
    ref = token_stats(x[:, -5:], torch.ones(2, 5, dtype=torch.bool))
    assert r.layers[0]["cosine"] == pytest.approx(ref["cosine"], rel=1e-9)
    assert r.meta["last_k"] == 5
    full = measure(m, inputs_embeds=x)
    assert r.layers[1]["attn_entropy"] != pytest.approx(full.layers[1]["attn_entropy"], rel=1e-6)


def test_low_beta_attention_is_uniform_and_rank_one():
    m = TransformerStack(Spec(depth=1, width=64, seq_len=64, beta=1e-4), seed=0)
    r = measure(m, inputs_embeds=torch.randn(1, 64, 64), spectra=2)
    row = r.layers[1]
    assert row["attn_entropy_norm"] == pytest.approx(1.0, abs=1e-6)
    assert row["attn_y2"] == pytest.approx(1 / 64, rel=1e-5)
    s1, s2 = row["attn_singular_values"]
    assert s1 == pytest.approx(1.0, abs=1e-4) and s2 < 1e-2


def test_grad_norms():
    m = stack()
    out = m(inputs_embeds=torch.randn(2, 16, 32))  # embeddings get no grad
    out.pow(2).sum().backward()
    g = grad_norms(m)
    assert "token_embedding.weight" not in g
    assert g["blocks.0.attn.q.weight"] == pytest.approx(m.blocks[0].attn.q.weight.grad.norm().item())
    assert set(g) == {n for n, p in m.named_parameters() if p.grad is not None}
    assert grad_norms(stack()) == {}


def test_unknown_model_and_custom_adapter():
    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4))
    with pytest.raises(TypeError, match="adapter"):
        measure(net, inputs_embeds=torch.randn(1, 3, 4))

    class Wrap(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.seq = net

        def forward(self, inputs_embeds):
            return self.seq(inputs_embeds)

    register_adapter(
        lambda mod: isinstance(mod, Wrap),
        lambda mod: HookPoints(blocks=list(mod.seq), attention_probs=[None, None]),
    )
    w = Wrap()
    assert len(hook_points(w).blocks) == 2
    r = measure(w, inputs_embeds=torch.randn(1, 3, 4))
    assert len(r) == 3 and math.isnan(r.layers[1]["attn_y2"])


def test_huggingface_bert_adapter():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(
        vocab_size=30,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
        attn_implementation="eager",
    )
    hf = transformers.BertModel(cfg).eval()
    ids = torch.randint(0, 30, (2, 16))
    with torch.no_grad():
        hf(input_ids=ids, output_attentions=True)
    own_hooks = all_hooks(hf)  # transformers installs (output-recording) hooks of its own on first use
    r = measure(hf, input_ids=ids)
    assert len(r) == 3
    for row in r.layers:
        assert row["q"] == pytest.approx(1.0, abs=1e-3)
    assert 0 < r.layers[1]["attn_entropy_norm"] <= 1
    assert all_hooks(hf) == own_hooks


def test_hf_is_causal_without_blocks_is_a_type_error_naming_the_model():
    from sigprop.measure import hf_is_causal

    class NoBlocks(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(4, 4)

    with pytest.raises(TypeError, match="NoBlocks has no list of transformer blocks"):
        hf_is_causal(NoBlocks())
    block = torch.nn.Module()
    block.attn = torch.nn.Module()
    block.attn.is_causal = True  # a block handed in explicitly is read, not searched for
    assert hf_is_causal(NoBlocks(), block) is True
