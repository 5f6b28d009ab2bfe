"""attn_entropy_norm under sliding windows: normalised by ln of the keys a row actually sees.

Oracle: uniform attention over the keys a row may see has entropy exactly ln n_t, so entropy / ln n_t = 1
for every row — whatever the window. Uniform attention is made exactly by zero queries (all logits 0).
The old normalisation (ln t causal, ln T otherwise) reads below 1 there; the tests check that too, so
they fail if the window is ignored.
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from sigprop import Spec  # noqa: E402
from sigprop.measure import attention_stats, keys_allowed, measure  # noqa: E402
from sigprop.nn import TransformerStack  # noqa: E402

T = 16


def _uniform_rows(mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(torch.float64)
    return m / m.sum(-1, keepdim=True)


def _band(T: int, causal: bool, W: int) -> torch.Tensor:
    t = torch.arange(T)
    diff = t[:, None] - t[None, :]
    if causal:
        return (diff >= 0) & (diff < W)
    return diff.abs() <= W // 2


@pytest.mark.parametrize("causal", [True, False])
def test_uniform_over_a_window_reads_one(causal):
    band = _band(T, causal, 4)[None, None]
    A = _uniform_rows(band)
    sel, tok = torch.ones(1, T, dtype=torch.bool), torch.ones(1, T)
    s = attention_stats(A, sel, tok, causal=causal, allowed=band)
    assert s["attn_entropy_norm"] == pytest.approx(1.0, abs=1e-12)
    old = attention_stats(A, sel, tok, causal=causal)  # window ignored: ln t / ln T in the denominator
    assert old["attn_entropy_norm"] < 0.9


def test_keys_allowed_reads_boolean_and_additive_masks():
    band = _band(T, True, 4)[None, None]
    assert torch.equal(keys_allowed(band, T), band)
    for masked in (torch.finfo(torch.float32).min, -math.inf, -1e4):
        additive = torch.where(band, torch.tensor(0.0), torch.tensor(masked))
        assert torch.equal(keys_allowed(additive, T), band)
    assert keys_allowed(band.float() * 0 + 0.3, T).all()  # a bias is not a mask
    assert keys_allowed(None, T) is None and keys_allowed(band[0], T) is None and keys_allowed(band, T + 1) is None


def _zero_queries(model, names):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if any(n in name for n in names):
                p.zero_()


@pytest.mark.parametrize("causal", [True, False])
def test_twin_with_a_window_smaller_than_T(causal):
    spec = Spec(depth=2, width=32, heads=2, seq_len=T, causal=causal, window=5)
    model = TransformerStack(spec, vocab_size=30, seed=0).eval()
    _zero_queries(model, ("attn.q.",))
    m = measure(model, input_ids=torch.randint(0, 30, (2, T)))
    for row in m.layers[1:]:
        assert row["attn_entropy_norm"] == pytest.approx(1.0, abs=1e-6)  # float32 probabilities


transformers = pytest.importorskip("transformers")
SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=100)


def _hf(cfg):
    return transformers.AutoModel.from_config(cfg, attn_implementation="eager").eval()


def test_mistral_sliding_window_uniform_reads_one():
    model = _hf(transformers.MistralConfig(**SMALL, num_key_value_heads=2, sliding_window=4))
    _zero_queries(model, ("q_proj",))
    m = measure(model, input_ids=torch.randint(3, 100, (2, T)), attention_mask=torch.ones(2, T, dtype=torch.long))
    for row in m.layers[1:]:
        assert row["attn_entropy_norm"] == pytest.approx(1.0, abs=1e-6)


def test_modernbert_local_layers_uniform_read_one():
    cfg = transformers.ModernBertConfig(**SMALL, global_attn_every_n_layers=2, local_attention=4, pad_token_id=0,
                                        bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2)
    assert cfg.layer_types == ["full_attention", "sliding_attention"]
    model = _hf(cfg)
    d = SMALL["hidden_size"]
    with torch.no_grad():  # Wqkv rows [0, d) are the queries
        for layer in model.layers:
            layer.attn.Wqkv.weight[:d].zero_()
    ids = torch.randint(3, 100, (2, T))
    for mask in (None, torch.ones(2, T, dtype=torch.long)):  # with and without a padding mask passed in
        m = measure(model, input_ids=ids, attention_mask=mask)
        for row in m.layers[1:]:
            assert row["attn_entropy_norm"] == pytest.approx(1.0, abs=1e-6)
