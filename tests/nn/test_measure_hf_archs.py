"""Blocks and causality of HuggingFace architectures, read from the models (not from attribute names)."""

import math

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from sigprop.measure import hook_points, measure  # noqa: E402

T = transformers
SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
CASES = {
    "bert": (lambda: T.BertModel(T.BertConfig(**SMALL)), False),
    "gpt2": (lambda: T.GPT2Model(T.GPT2Config(n_embd=32, n_layer=2, n_head=2)), True),
    "vit": (lambda: T.ViTModel(T.ViTConfig(**SMALL, image_size=32, patch_size=8)), False),
    "vit_cls": (lambda: T.ViTForImageClassification(T.ViTConfig(**SMALL, image_size=32, patch_size=8)), False),
    "modernbert": (lambda: T.ModernBertModel(T.ModernBertConfig(**SMALL, global_attn_every_n_layers=1)), False),
    "opt": (lambda: T.OPTModel(T.OPTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, ffn_dim=64,
                                           word_embed_proj_dim=32)), True),
    "t5_encoder": (lambda: T.T5EncoderModel(T.T5Config(d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=2)), False),
    "llama": (lambda: T.LlamaModel(T.LlamaConfig(**SMALL, num_key_value_heads=1)), True),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_blocks_and_causality(name):
    build, causal = CASES[name]
    torch.manual_seed(0)
    model = build().eval()
    points = hook_points(model)
    assert len(points.blocks) == 2
    assert points.causal is causal


@pytest.mark.parametrize("name", ["opt", "t5_encoder", "modernbert"])
def test_text_models_measure_finite_attention(name):
    build, causal = CASES[name]
    torch.manual_seed(0)
    m = measure(build().eval(), input_ids=torch.randint(0, 100, (2, 16)))
    assert m.meta["causal"] is causal
    assert all(math.isfinite(v) for v in m["attn_entropy_norm"][1:])
