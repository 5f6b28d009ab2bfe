"""Published configuration values of well-known checkpoints, as data, so that sigprop can diagnose them offline.

Many clusters cannot reach the HuggingFace hub, so ``AutoConfig.from_pretrained("bert-base-uncased")`` fails
there. This table holds the values of the released ``config.json`` files that matter at initialisation
(width d, depth L, heads, key/value heads, MLP width, activation, positions, the init std
``initializer_range`` / ``init_std`` / T5's ``initializer_factor``, rotary fraction and base, parallel
residual, norm eps, sliding window, tied embeddings, vocabulary size, ...) under their published names.
Legacy rotary names (``rotary_pct``, ``rotary_emb_base``, ``rope_theta``, ``global_rope_theta``,
``local_rope_theta``) are kept as published; current ``transformers`` folds them into ``rope_parameters``,
and :func:`config_value` reads them back either way.

API
---
* :func:`names` — every checkpoint name in the table;
* :func:`lookup` — ``(model_type, fields)`` of a name (case-insensitive; the organisation prefix may be
  left out or differ when the rest is unambiguous); unknown names raise ``ValueError`` with close matches;
* :func:`structure` — block structure facts that are no config field: norm type, pre/post norm,
  sequential/parallel block, causal mask, position encoding;
* :func:`config` — a ``transformers`` config built offline with ``AutoConfig.for_model`` (``transformers``
  is optional and imported only there);
* :func:`config_value` — a published field read back from a built config.
"""

from __future__ import annotations

import difflib
from typing import Any

__all__ = ["config", "config_value", "lookup", "names", "published_fields", "structure"]

# ------------------------------------------------------------------------------------------- the table
_BERT = dict(hidden_act="gelu", max_position_embeddings=512, initializer_range=0.02, layer_norm_eps=1e-12,
             type_vocab_size=2, vocab_size=30522, pad_token_id=0, hidden_dropout_prob=0.1,
             attention_probs_dropout_prob=0.1, position_embedding_type="absolute", tie_word_embeddings=True)
_GPT2 = dict(n_positions=1024, n_ctx=1024, vocab_size=50257, activation_function="gelu_new", initializer_range=0.02,
             layer_norm_epsilon=1e-5, n_inner=None, resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1,
             bos_token_id=50256, eos_token_id=50256, scale_attn_weights=True, tie_word_embeddings=True)
_PYTHIA = dict(hidden_act="gelu", max_position_embeddings=2048, rotary_pct=0.25, rotary_emb_base=10000,
               use_parallel_residual=True, layer_norm_eps=1e-5, initializer_range=0.02, attention_dropout=0.0,
               hidden_dropout=0.0, bos_token_id=0, eos_token_id=0, tie_word_embeddings=False)
_OPT = dict(max_position_embeddings=2048, do_layer_norm_before=True, activation_function="relu", init_std=0.02,
            vocab_size=50272, enable_bias=True, layer_norm_elementwise_affine=True, dropout=0.1,
            attention_dropout=0.0, pad_token_id=1, bos_token_id=2, eos_token_id=2, tie_word_embeddings=True)
_T5 = dict(d_kv=64, relative_attention_num_buckets=32, dropout_rate=0.1, layer_norm_epsilon=1e-6,
           initializer_factor=1.0, feed_forward_proj="relu", vocab_size=32128, is_encoder_decoder=True,
           n_positions=512, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, tie_word_embeddings=True)


def _bert(d: int, L: int, h: int, ff: int) -> dict[str, Any]:
    return dict(_BERT, hidden_size=d, num_hidden_layers=L, num_attention_heads=h, intermediate_size=ff)


def _gpt2(d: int, L: int, h: int) -> dict[str, Any]:
    return dict(_GPT2, n_embd=d, n_layer=L, n_head=h)


def _pythia(d: int, L: int, h: int, vocab: int = 50304) -> dict[str, Any]:
    return dict(_PYTHIA, hidden_size=d, num_hidden_layers=L, num_attention_heads=h, intermediate_size=4 * d,
                vocab_size=vocab)


def _opt(d: int, L: int, h: int, **extra: Any) -> dict[str, Any]:
    return dict(_OPT, hidden_size=d, num_hidden_layers=L, num_attention_heads=h, ffn_dim=4 * d,
                word_embed_proj_dim=d, **extra)


#: what the three published Llama-2 configs share
_LLAMA2 = dict(hidden_act="silu", max_position_embeddings=4096, initializer_range=0.02, rms_norm_eps=1e-5,
               rope_theta=10000.0, attention_bias=False, pretraining_tp=1, vocab_size=32000, bos_token_id=1,
               eos_token_id=2, tie_word_embeddings=False)


def _llama2(d: int, ff: int, L: int, h: int, kv: int) -> dict[str, Any]:
    return dict(_LLAMA2, hidden_size=d, intermediate_size=ff, num_hidden_layers=L, num_attention_heads=h,
                num_key_value_heads=kv)


def _t5(d: int, L: int, h: int, ff: int) -> dict[str, Any]:
    return dict(_T5, d_model=d, num_layers=L, num_decoder_layers=L, num_heads=h, d_ff=ff)


#: name → (model_type, published config fields)
_TABLE: dict[str, tuple[str, dict[str, Any]]] = {
    "bert-base-uncased": ("bert", _bert(768, 12, 12, 3072)),
    "bert-large-uncased": ("bert", _bert(1024, 24, 16, 4096)),
    "bert-base-cased": ("bert", dict(_bert(768, 12, 12, 3072), vocab_size=28996)),
    "roberta-base": ("roberta", dict(_BERT, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                     intermediate_size=3072, max_position_embeddings=514, layer_norm_eps=1e-5,
                                     type_vocab_size=1, vocab_size=50265, pad_token_id=1, bos_token_id=0,
                                     eos_token_id=2)),
    "roberta-large": ("roberta", dict(_BERT, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                      intermediate_size=4096, max_position_embeddings=514, layer_norm_eps=1e-5,
                                      type_vocab_size=1, vocab_size=50265, pad_token_id=1, bos_token_id=0,
                                      eos_token_id=2)),
    "distilbert-base-uncased": ("distilbert", dict(
        dim=768, n_layers=6, n_heads=12, hidden_dim=3072, activation="gelu", max_position_embeddings=512,
        initializer_range=0.02, vocab_size=30522, sinusoidal_pos_embds=False, dropout=0.1, attention_dropout=0.1,
        qa_dropout=0.1, seq_classif_dropout=0.2, pad_token_id=0, tie_word_embeddings=True)),
    "gpt2": ("gpt2", _gpt2(768, 12, 12)),
    "gpt2-medium": ("gpt2", _gpt2(1024, 24, 16)),
    "gpt2-large": ("gpt2", _gpt2(1280, 36, 20)),
    "gpt2-xl": ("gpt2", _gpt2(1600, 48, 25)),
    "EleutherAI/pythia-70m": ("gpt_neox", _pythia(512, 6, 8)),
    "EleutherAI/pythia-160m": ("gpt_neox", _pythia(768, 12, 12)),
    "EleutherAI/pythia-410m": ("gpt_neox", _pythia(1024, 24, 16)),
    "EleutherAI/pythia-1b": ("gpt_neox", _pythia(2048, 16, 8)),
    "EleutherAI/pythia-1.4b": ("gpt_neox", _pythia(2048, 24, 16)),
    "EleutherAI/pythia-2.8b": ("gpt_neox", _pythia(2560, 32, 32)),
    "EleutherAI/pythia-6.9b": ("gpt_neox", _pythia(4096, 32, 32, vocab=50432)),
    "EleutherAI/pythia-12b": ("gpt_neox", _pythia(5120, 36, 40, vocab=50688)),
    "EleutherAI/gpt-neox-20b": ("gpt_neox", _pythia(6144, 44, 64, vocab=50432)),
    "facebook/opt-125m": ("opt", _opt(768, 12, 12)),
    # the one post-LN OPT, with a 512-wide embedding projected in and out of the 1024-wide blocks
    "facebook/opt-350m": ("opt", dict(_opt(1024, 24, 16), word_embed_proj_dim=512, do_layer_norm_before=False)),
    "facebook/opt-1.3b": ("opt", _opt(2048, 24, 32)),
    "facebook/opt-2.7b": ("opt", _opt(2560, 32, 32)),
    "facebook/opt-6.7b": ("opt", _opt(4096, 32, 32)),
    "meta-llama/Llama-2-7b-hf": ("llama", _llama2(4096, 11008, 32, 32, 32)),
    "meta-llama/Llama-2-13b-hf": ("llama", _llama2(5120, 13824, 40, 40, 40)),
    "meta-llama/Llama-2-70b-hf": ("llama", _llama2(8192, 28672, 80, 64, 8)),
    "mistralai/Mistral-7B-v0.1": ("mistral", dict(
        hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=8, hidden_act="silu", max_position_embeddings=32768, initializer_range=0.02,
        rms_norm_eps=1e-5, rope_theta=10000.0, sliding_window=4096, vocab_size=32000, bos_token_id=1,
        eos_token_id=2, tie_word_embeddings=False)),
    "t5-small": ("t5", _t5(512, 6, 8, 2048)),
    "t5-base": ("t5", _t5(768, 12, 12, 3072)),
    "t5-large": ("t5", _t5(1024, 24, 16, 4096)),
    "google/vit-base-patch16-224": ("vit", dict(
        hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, hidden_act="gelu",
        image_size=224, patch_size=16, num_channels=3, qkv_bias=True, initializer_range=0.02,
        layer_norm_eps=1e-12, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)),
    "google/vit-large-patch16-224": ("vit", dict(
        hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096, hidden_act="gelu",
        image_size=224, patch_size=16, num_channels=3, qkv_bias=True, initializer_range=0.02,
        layer_norm_eps=1e-12, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)),
    "answerdotai/ModernBERT-base": ("modernbert", dict(
        hidden_size=768, intermediate_size=1152, num_hidden_layers=22, num_attention_heads=12,
        hidden_activation="gelu", max_position_embeddings=8192, global_rope_theta=160000.0,
        local_rope_theta=10000.0, local_attention=128, global_attn_every_n_layers=3, initializer_range=0.02,
        initializer_cutoff_factor=2.0, norm_eps=1e-5, norm_bias=False, attention_bias=False, mlp_bias=False,
        vocab_size=50368, pad_token_id=50283, bos_token_id=50281, eos_token_id=50282, cls_token_id=50281,
        sep_token_id=50282, embedding_dropout=0.0, attention_dropout=0.0, mlp_dropout=0.0,
        tie_word_embeddings=True)),
}

#: block structure per model_type: (norm type, norm position, block, causal, positions)
_STRUCTURE: dict[str, tuple[str, str, str, bool, str]] = {
    "bert": ("layernorm", "post", "sequential", False, "learned"),
    "roberta": ("layernorm", "post", "sequential", False, "learned"),
    "distilbert": ("layernorm", "post", "sequential", False, "learned"),
    "gpt2": ("layernorm", "pre", "sequential", True, "learned"),
    "gpt_neox": ("layernorm", "pre", "parallel", True, "rotary"),
    "opt": ("layernorm", "pre", "sequential", True, "learned"),
    "llama": ("rmsnorm", "pre", "sequential", True, "rotary"),
    "mistral": ("rmsnorm", "pre", "sequential", True, "rotary"),
    "t5": ("rmsnorm", "pre", "sequential", False, "relative bias"),
    "vit": ("layernorm", "pre", "sequential", False, "learned"),
    "modernbert": ("layernorm", "pre", "sequential", False, "rotary"),
}

#: published rotary names → path inside ``config.rope_parameters`` of current ``transformers``
_ROPE_KEYS: dict[str, tuple[str, ...]] = {
    "rotary_pct": ("partial_rotary_factor",),
    "rotary_emb_base": ("rope_theta",),
    "rope_theta": ("rope_theta",),
    "global_rope_theta": ("full_attention", "rope_theta"),
    "local_rope_theta": ("sliding_attention", "rope_theta"),
}


# ------------------------------------------------------------------------------------------------ API
def names() -> list[str]:
    """Every checkpoint name in the table, in table order (as published, organisation prefix included)."""
    return list(_TABLE)


def _resolve(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"checkpoint name must be a non-empty string; got {name!r}")
    key = name.strip().lower()
    exact = [n for n in _TABLE if n.lower() == key]
    if exact:
        return exact[0]
    tail = key.rsplit("/", 1)[-1]
    by_tail = [n for n in _TABLE if n.lower().rsplit("/", 1)[-1] == tail]
    if len(by_tail) == 1:
        return by_tail[0]

    def score(n: str) -> tuple[bool, float]:
        """Names that start with the query first, then by similarity."""
        forms = (n.lower(), n.lower().rsplit("/", 1)[-1])
        return (any(f.startswith(tail) for f in forms),
                max(difflib.SequenceMatcher(None, q, f).ratio() for q in (key, tail) for f in forms))

    close = [n for n in sorted(_TABLE, key=score, reverse=True)[:5] if max(score(n)) >= 0.5]
    hint = f"; close matches: {', '.join(close)}" if close else ""
    raise ValueError(f"unknown checkpoint name {name!r} (sigprop knows {len(_TABLE)}: see "
                     f"sigprop.diagnose.checkpoints.names()){hint}")


def lookup(name: str) -> tuple[str, dict[str, Any]]:
    """``(model_type, fields)`` of a well-known checkpoint: its published config values (a fresh dict).

    ``name`` is matched case-insensitively; an organisation prefix may be omitted or differ
    (``"pythia-70m"``, ``"openai-community/gpt2"``) as long as the rest names one entry. Unknown names raise
    ``ValueError`` listing close matches.
    """
    full = _resolve(name)
    model_type, fields = _TABLE[full]
    return model_type, dict(fields)


def published_fields(model_type: str) -> frozenset[str]:
    """Every field the table publishes for some checkpoint of ``model_type`` (empty for other families)."""
    return frozenset(k for mt, fields in _TABLE.values() if mt == model_type for k in fields)


def structure(name: str) -> dict[str, Any]:
    """Block structure facts of a checkpoint that no single config field states.

    Keys: ``norm_type`` (``"layernorm"`` | ``"rmsnorm"``; T5's norm is an RMS norm), ``norm_position``
    (``"pre"`` | ``"post"``: where the norm sits relative to the residual sum), ``block`` (``"sequential"`` |
    ``"parallel"``: attention and MLP read the same normed input, GPT-NeoX), ``causal`` (decoder mask),
    ``positions`` (``"learned"``, ``"rotary"``, ``"relative bias"``), and for rotary models
    ``rope_fraction`` (rotated share of each head, ρ-independent) and ``rope_theta``.
    """
    full = _resolve(name)
    model_type, fields = _TABLE[full]
    norm, where, block, causal, pos = _STRUCTURE[model_type]
    if model_type == "opt" and not fields.get("do_layer_norm_before", True):
        where = "post"
    if model_type == "gpt_neox" and not fields.get("use_parallel_residual", True):
        block = "sequential"
    out: dict[str, Any] = {"model_type": model_type, "norm_type": norm, "norm_position": where, "block": block,
                           "causal": causal, "positions": pos}
    if pos == "rotary":
        out["rope_fraction"] = float(fields.get("rotary_pct", 1.0))
        out["rope_theta"] = float(fields.get("rope_theta", fields.get("rotary_emb_base",
                                                                        fields.get("global_rope_theta", 10000.0))))
    return out


def config(name: str, **overrides: Any):
    """A ``transformers`` config of checkpoint ``name``, built offline (no hub access).

    ``AutoConfig.for_model(model_type, **fields)`` with the published fields updated by ``overrides``
    (e.g. ``num_hidden_layers=48``). Needs ``transformers`` (the ``hf`` extra).
    """
    try:
        from transformers import AutoConfig
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("sigprop.diagnose.checkpoints.config needs transformers: pip install 'sigprop[hf]'") from exc
    model_type, fields = lookup(name)
    fields.update(overrides)
    return AutoConfig.for_model(model_type, **fields)


def config_value(cfg: Any, key: str) -> Any:
    """Published field ``key`` read back from a built config ``cfg``.

    Plain attributes are returned as they are; the legacy rotary names (``rotary_pct``, ``rotary_emb_base``,
    ``rope_theta``, ``global_rope_theta``, ``local_rope_theta``) are read from ``cfg.rope_parameters`` when
    the config keeps them there. ``KeyError`` if the config has neither.
    """
    value = getattr(cfg, key, None)
    if value is not None:
        return value
    if key in _ROPE_KEYS:
        node: Any = getattr(cfg, "rope_parameters", None)
        for part in _ROPE_KEYS[key]:
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            return node
    if hasattr(cfg, key):
        return None
    raise KeyError(f"{type(cfg).__name__} has no field {key!r}")
