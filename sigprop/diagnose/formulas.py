"""Init variances of the built-in architectures from their config alone, in closed form — the fast path of a
``--no-measure`` diagnosis (no model is built, ``transformers``' modelling code is not even imported).

The formulas restate each family's ``_init_weights`` (``transformers`` 5.x): every Linear/Embedding
N(0, σ²) with σ = ``initializer_range`` (OPT: ``init_std``); GPT-2 scales the residual output projections by
1/√(2L); T5 scales each matrix by its fan-in times ``initializer_factor`` (and no logit scale); ModernBERT
draws from a normal truncated at ±c σ (c = ``initializer_cutoff_factor``) and scales output projections by
1/√(2L). They are checked against the recorded init of every family in ``tests/diagnose/test_extract.py``
(the recorded path, :func:`sigprop.diagnose.extract.recorded_init`, is the oracle and the fallback for
anything not covered here, e.g. GPT-2's ``scale_attn_by_inverse_layer_idx``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from sigprop.diagnose.archs import Arch
from sigprop.diagnose.extract import Effective

__all__ = ["effective_from_config", "truncated_variance_factor", "t5_relative_bias_variance"]


def truncated_variance_factor(c: float) -> float:
    """Variance of N(0, 1) truncated to [−c, c]: 1 − 2 c φ(c) / (2 Φ(c) − 1) (0.7737 at c = 2)."""
    phi = math.exp(-c * c / 2) / math.sqrt(2 * math.pi)
    return 1.0 - 2 * c * phi / math.erf(c / math.sqrt(2))


def t5_relative_bias_variance(config: Any) -> float:
    """Variance of T5's relative position bias table at init: (``initializer_factor``)² / d_model."""
    return float(config.initializer_factor) ** 2 / config.d_model


def _roles(model_type: str, c: Any) -> dict[str, Any] | None:
    """Per-role variances and shapes, or ``None`` when this config is outside the closed forms."""
    if model_type in ("bert", "roberta"):
        v = c.initializer_range**2
        d, H, ff = c.hidden_size, c.num_attention_heads, c.intermediate_size
        emb = [(v, False), (v, False)] + ([(v, True)] if getattr(c, "type_vocab_size", 0) else [])
        return dict(d=d, H=H, kv=H, dh=d // H, inner=d, ff=ff, q=v, k=v, v=v, o=v, mlp_in=v, mlp_out=v, emb=emb,
                    embed_norm=True)
    if model_type == "distilbert":
        if getattr(c, "sinusoidal_pos_embds", False):
            return None
        v = c.initializer_range**2
        return dict(d=c.dim, H=c.n_heads, kv=c.n_heads, dh=c.dim // c.n_heads, inner=c.dim, ff=c.hidden_dim, q=v, k=v,
                    v=v, o=v, mlp_in=v, mlp_out=v, emb=[(v, False), (v, False)], embed_norm=True)
    if model_type == "gpt2":
        if getattr(c, "scale_attn_by_inverse_layer_idx", False) or not getattr(c, "scale_attn_weights", True):
            return None
        v, d, L = c.initializer_range**2, c.n_embd, c.n_layer
        return dict(d=d, H=c.n_head, kv=c.n_head, dh=d // c.n_head, inner=d, ff=c.n_inner or 4 * d, q=v, k=v, v=v,
                    o=v / (2 * L), mlp_in=v, mlp_out=v / (2 * L), emb=[(v, False), (v, False)], embed_norm=False)
    if model_type == "gpt_neox":
        v, d, H = c.initializer_range**2, c.hidden_size, c.num_attention_heads
        return dict(d=d, H=H, kv=H, dh=d // H, inner=d, ff=c.intermediate_size, q=v, k=v, v=v, o=v, mlp_in=v,
                    mlp_out=v, emb=[(v, False)], embed_norm=False)
    if model_type == "opt":
        if getattr(c, "word_embed_proj_dim", c.hidden_size) != c.hidden_size:
            return None
        v, d, H = c.init_std**2, c.hidden_size, c.num_attention_heads
        return dict(d=d, H=H, kv=H, dh=d // H, inner=d, ff=c.ffn_dim, q=v, k=v, v=v, o=v, mlp_in=v, mlp_out=v,
                    emb=[(v, False), (v, False)], embed_norm=False)
    if model_type in ("llama", "mistral", "qwen2"):
        v, d, H = c.initializer_range**2, c.hidden_size, c.num_attention_heads
        dh = getattr(c, "head_dim", None) or d // H
        kv = getattr(c, "num_key_value_heads", None) or H
        return dict(d=d, H=H, kv=kv, dh=dh, inner=H * dh, ff=c.intermediate_size, q=v, k=v, v=v, o=v, mlp_in=v,
                    mlp_gate=v, mlp_out=v, emb=[(v, False)], embed_norm=False)
    if model_type == "t5":
        f, d, dkv, H, ff = c.initializer_factor, c.d_model, c.d_kv, c.num_heads, c.d_ff
        roles = dict(d=d, H=H, kv=H, dh=dkv, inner=H * dkv, ff=ff, q=f * f / (d * dkv), k=f * f / d, v=f * f / d,
                     o=f * f / (H * dkv), mlp_in=f * f / d, mlp_out=f * f / ff, emb=[(f * f, False)], embed_norm=False,
                     scale=1.0)
        if getattr(c, "is_gated_act", False):
            roles["mlp_gate"] = f * f / d
        return roles
    if model_type == "vit":
        v, d, H = c.initializer_range**2, c.hidden_size, c.num_attention_heads
        patch = v * c.num_channels * c.patch_size**2  # N(0, 1) pixels through the patch convolution
        return dict(d=d, H=H, kv=H, dh=d // H, inner=d, ff=c.intermediate_size, q=v, k=v, v=v, o=v, mlp_in=v,
                    mlp_out=v, emb=[(v, False), (patch, False)], embed_norm=False)
    if model_type == "modernbert":
        cut = c.initializer_cutoff_factor if c.initializer_cutoff_factor is not None else 3.0
        t = truncated_variance_factor(cut)
        v, d, H, L = c.initializer_range**2 * t, c.hidden_size, c.num_attention_heads, c.num_hidden_layers
        out = v / (2 * L)
        return dict(d=d, H=H, kv=H, dh=d // H, inner=d, ff=c.intermediate_size, q=v, k=v, v=v, o=out, mlp_in=v,
                    mlp_gate=v, mlp_out=out, emb=[(v, False)], embed_norm=True)
    return None


def _depth(c: Any) -> int:
    for k in ("num_hidden_layers", "n_layer", "num_layers", "n_layers"):
        v = getattr(c, k, None)
        if isinstance(v, int):
            return v
    raise ValueError("config has no layer count")


def effective_from_config(config: Any, arch: Arch) -> Effective | None:
    """The :class:`Effective` of a built-in architecture's config from the closed forms, or ``None``."""
    mt = getattr(config, "model_type", None)
    r = _roles(mt, config) if mt in arch.model_types else None
    if r is None:
        return None
    assert mt is not None  # one of arch.model_types
    settings = arch.settings(config)
    L = _depth(config)
    d, dh, inner, ff = r["d"], r["dh"], r["inner"], r["ff"]
    scale = r.get("scale", dh**-0.5)
    gated = settings["activation"] in ("swiglu", "geglu")
    const = lambda x: np.full(L, float(x))  # noqa: E731
    if gated:
        g = r.get("mlp_gate", r["mlp_in"])
        w2, w2o = g * d, r["mlp_out"] * ff * r["mlp_in"] / g
    else:
        w2, w2o = r["mlp_in"] * d, r["mlp_out"] * ff
    q0 = sum(v for v, _ in r["emb"])
    p0 = sum(v for v, shared in r["emb"] if shared)
    return Effective(mt, arch.name, d, r["H"], r["kv"], dh, inner, ff, L, scale, settings,
                     const(math.sqrt(r["q"] * r["k"]) * d * scale * math.sqrt(dh)), const(r["v"] * d * r["o"] * inner),
                     const(0.0), const(w2), const(w2o), const(0.0), q0, p0, r["embed_norm"],
                     list(settings.get("reasons", [])), [])
