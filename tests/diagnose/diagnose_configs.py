"""Small configs (d = 256, 4 layers) of the eleven built-in architectures, built with library defaults
(no attn_implementation argument), shared by the diagnose tests."""

from __future__ import annotations

from typing import Any

D, L, H, FF = 256, 4, 4, 1024


def small_configs() -> dict[str, Any]:
    import transformers as T

    common = dict(hidden_size=D, num_hidden_layers=L, num_attention_heads=H, intermediate_size=FF)
    return {
        "bert": T.BertConfig(**common),
        "roberta": T.RobertaConfig(**common),
        "distilbert": T.DistilBertConfig(dim=D, n_layers=L, n_heads=H, hidden_dim=FF),
        "gpt2": T.GPT2Config(n_embd=D, n_layer=L, n_head=H),
        "gpt_neox": T.GPTNeoXConfig(**common),
        "opt": T.OPTConfig(hidden_size=D, num_hidden_layers=L, num_attention_heads=H, ffn_dim=FF, word_embed_proj_dim=D),
        "llama": T.LlamaConfig(**common, num_key_value_heads=2),
        "mistral": T.MistralConfig(**common, num_key_value_heads=2),
        "t5": T.T5Config(d_model=D, d_kv=D // H, d_ff=FF, num_layers=L, num_heads=H),
        "vit": T.ViTConfig(**common, image_size=64, patch_size=8),
        "modernbert": T.ModernBertConfig(**common),
    }
