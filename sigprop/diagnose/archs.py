"""Architecture registry: where the pieces of a block live in a model, and the block structure.

An :class:`Arch` maps the modules of one block to *roles* — the query, key, value and output projections
(``q``, ``k``, ``v``, ``o``, or a fused ``qkv`` with its layout), the MLP input / gate / output
(``mlp_in``, ``mlp_gate``, ``mlp_out``, or a fused ``mlp_in_gate``) — and names the embeddings that
set the state (ρ₀, q₀) entering block 1. Its ``settings(config)`` gives the facts that are not weights:
pre/post norm, sequential/parallel block, activation, norm type, RoPE fraction and base, sliding window,
causal mask and the logit scale s (``d_h^{-1/2}``; T5: 1).

Built in: BERT, RoBERTa, DistilBERT, GPT-2, GPT-NeoX (Pythia), OPT, Llama, Mistral, the T5 encoder, ViT
and ModernBERT. :func:`generic_arch` finds the same roles by module names in other models built from these
pieces; :func:`register_arch` teaches sigprop a new family.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Arch", "arch_for", "archs", "generic_arch", "register_arch", "activation_name", "FUSED_LAYOUTS"]

#: fused projection layouts: ``concat`` = output features ``[q; k; v]`` (or ``[gate; up]``),
#: ``heads`` = per head ``[q_h; k_h; v_h]`` (GPT-NeoX)
FUSED_LAYOUTS = ("concat", "heads")


@dataclass(frozen=True)
class Arch:
    """Where the roles of one block live (paths relative to the block) and how to read the config.

    model_types : ``config.model_type`` values, or class names of plain ``torch.nn.Module`` models (whose
        ``settings`` then receives ``config=None``).
    layers : candidate paths of the block list relative to the model (the first that exists is used).
    q, k, v, o : projection paths (``None`` when fused in ``qkv``).
    qkv, qkv_layout : fused query/key/value projection and its layout (:data:`FUSED_LAYOUTS`).
    attn : path of the attention module (its ``scaling`` and ``is_causal`` are read when present).
    mlp_in, mlp_gate, mlp_out : MLP projections (``mlp_gate`` is the one φ is applied to in a gated MLP).
    mlp_in_gate : a fused ``[gate; up]`` projection (ModernBERT ``Wi``: φ acts on the first half).
    embeddings : embedding tables that add up to the input of block 1, as ``(path, shared)``, with
        ``shared`` true for tables every token reads the same row of (BERT's token type).
    embed_norm : path of a norm applied to the embeddings (post-LN BERT, ModernBERT), else ``None``.
    patch : path of a patch-embedding convolution (ViT: inputs are images).
    settings : ``settings(config) -> dict`` with ``norm`` (pre/post), ``block``, ``activation``,
        ``norm_type``, ``rope_fraction``, ``rope_theta``, ``window``, ``causal``, ``logit_scale`` (None =
        read from the attention module or ``d_h^{-1/2}``) and ``reasons`` (list of approximations).
    model_cls : builds the model from a config (default ``AutoModel.from_config``).
    """

    name: str
    model_types: tuple[str, ...]
    layers: tuple[str, ...]
    settings: Callable[[Any], dict[str, Any]]
    q: str | None = None
    k: str | None = None
    v: str | None = None
    o: str | None = None
    qkv: str | None = None
    qkv_layout: str = "concat"
    attn: str | None = None
    mlp_in: str | None = None
    mlp_gate: str | None = None
    mlp_out: str | None = None
    mlp_in_gate: str | None = None
    embeddings: tuple[tuple[str, bool], ...] = ()
    embed_norm: str | None = None
    patch: str | None = None
    model_cls: Callable[[Any], Any] | None = field(default=None, compare=False)


_REGISTRY: list[Arch] = []


def register_arch(arch: Arch) -> Arch:
    """Register ``arch`` for its ``model_types``; later registrations take precedence."""
    if not isinstance(arch, Arch):
        raise ValueError(f"arch must be a sigprop.diagnose.Arch; got {type(arch).__name__}")
    if arch.qkv_layout not in FUSED_LAYOUTS:
        raise ValueError(f"qkv_layout must be one of {FUSED_LAYOUTS}; got {arch.qkv_layout!r}")
    if arch.qkv is None and not (arch.q and arch.k and arch.v):
        raise ValueError(f"arch {arch.name!r} needs q, k and v paths or a fused qkv path")
    _REGISTRY.insert(0, arch)
    return arch


def archs() -> list[Arch]:
    """Every registered architecture (latest first)."""
    return list(_REGISTRY)


def arch_for(model_type: str | None) -> Arch | None:
    """The registered :class:`Arch` of a ``model_type``, or ``None``."""
    for a in _REGISTRY:
        if model_type in a.model_types:
            return a
    return None


# ------------------------------------------------------------------------------------ config helpers
def activation_name(name: Any) -> str:
    """The theory's activation for a ``transformers`` activation name (tanh-approximate GELUs are GELU
    to 10⁻³); ``ValueError`` for one the theory has no kernel for."""
    n = str(name).lower().replace("-", "_")
    if n.startswith("gelu") or n in ("quick_gelu",):
        return "gelu"
    if n in ("relu",):
        return "relu"
    if n in ("silu", "swish"):
        return "silu"
    if n in ("tanh",):
        return "tanh"
    if n in ("linear", "identity"):
        return "identity"
    raise ValueError(f"activation {name!r} has no kernel in the theory (supported: gelu*, relu, silu, tanh, identity)")


def _cfg(config: Any, *names: str, default: Any = None) -> Any:
    for n in names:
        v = getattr(config, n, None)
        if v is not None:
            return v
    return default


def _rope(config: Any, *, fraction_default: float = 1.0, kind: str | None = None) -> tuple[float, float]:
    rp = getattr(config, "rope_parameters", None) or {}
    if kind and isinstance(rp.get(kind), dict):
        rp = rp[kind]
    frac = rp.get("partial_rotary_factor", _cfg(config, "partial_rotary_factor", "rotary_pct", default=fraction_default))
    theta = rp.get("rope_theta", _cfg(config, "rope_theta", "rotary_emb_base", default=10000.0))
    return float(frac), float(theta)


def _base(**kw: Any) -> dict[str, Any]:
    out = dict(norm="pre", block="sequential", norm_type="layernorm", rope_fraction=0.0, rope_theta=10000.0,
               window=None, causal=False, logit_scale=None, reasons=[])
    out.update(kw)
    return out


def _bert_settings(config: Any) -> dict[str, Any]:
    reasons = []
    pet = getattr(config, "position_embedding_type", "absolute") or "absolute"
    if pet != "absolute":
        reasons.append(f"position_embedding_type={pet!r}: relative position scores are added to the logits")
    return _base(norm="post", activation=activation_name(config.hidden_act), causal=bool(getattr(config, "is_decoder", False)),
                 reasons=reasons)


def _distilbert_settings(config: Any) -> dict[str, Any]:
    return _base(norm="post", activation=activation_name(config.activation))


def _gpt2_settings(config: Any) -> dict[str, Any]:
    reasons = []
    if not getattr(config, "scale_attn_weights", True):
        reasons.append("scale_attn_weights=False")
    s = None
    if getattr(config, "scale_attn_by_inverse_layer_idx", False):
        reasons.append("scale_attn_by_inverse_layer_idx: the logit scale differs per layer (β is their mean)")
    return _base(activation=activation_name(config.activation_function), causal=True, logit_scale=s, reasons=reasons)


def _neox_settings(config: Any) -> dict[str, Any]:
    frac, theta = _rope(config, fraction_default=0.25)
    return _base(activation=activation_name(config.hidden_act), causal=True,
                 block="parallel" if getattr(config, "use_parallel_residual", True) else "sequential",
                 rope_fraction=frac, rope_theta=theta)


def _opt_settings(config: Any) -> dict[str, Any]:
    reasons = []
    proj = getattr(config, "word_embed_proj_dim", None)
    if proj is not None and proj != config.hidden_size:
        reasons.append(f"word_embed_proj_dim = {proj} ≠ hidden_size: token embeddings are projected (project_in), "
                       "q₀ counts the table only")
    return _base(norm="pre" if getattr(config, "do_layer_norm_before", True) else "post",
                 activation=activation_name(config.activation_function), causal=True, reasons=reasons)


def _llama_settings(config: Any) -> dict[str, Any]:
    frac, theta = _rope(config)
    act = activation_name(config.hidden_act)
    gated = {"silu": "swiglu", "gelu": "geglu"}.get(act)
    if gated is None:
        raise ValueError(f"gated MLP with activation {config.hidden_act!r} has no kernel in the theory")
    window = getattr(config, "sliding_window", None) if getattr(config, "use_sliding_window", True) else None
    return _base(norm_type="rmsnorm", activation=gated, causal=True, rope_fraction=frac, rope_theta=theta,
                 window=int(window) if window else None)


def _t5_settings(config: Any) -> dict[str, Any]:
    act = activation_name(getattr(config, "dense_act_fn", "relu"))
    if getattr(config, "is_gated_act", False):
        gated = {"silu": "swiglu", "gelu": "geglu"}.get(act)
        if gated is None:
            raise ValueError(f"gated T5 MLP with {config.dense_act_fn!r} has no kernel in the theory")
        act = gated
    return _base(norm_type="rmsnorm", activation=act, logit_scale=1.0,
                 reasons=["relative position bias added to the logits of every head (its within-row variance is "
                          "reported; the theory leaves it out)"])


def _vit_settings(config: Any) -> dict[str, Any]:
    return _base(activation=activation_name(config.hidden_act))


def _modernbert_settings(config: Any) -> dict[str, Any]:
    frac, theta = _rope(config, kind="full_attention")
    act = activation_name(getattr(config, "hidden_activation", "gelu"))
    gated = {"silu": "swiglu", "gelu": "geglu"}[act]
    reasons = []
    local = getattr(config, "local_attention", None)
    types = getattr(config, "layer_types", None) or []
    if local and any(t == "sliding_attention" for t in types):
        reasons.append(f"local attention layers see the keys within ±{int(local) // 2} (sequences of at most "
                       f"{int(local) // 2 + 1} tokens are unaffected); the theory treats every layer as global")
    return _base(activation=gated, rope_fraction=frac, rope_theta=theta, reasons=reasons, local_window=local)


def _t5_encoder(config: Any) -> Any:
    import transformers

    return transformers.T5EncoderModel(config)


def _auto(config: Any) -> Any:
    import transformers

    return transformers.AutoModel.from_config(config)


_BUILTIN = (
    Arch("bert", ("bert",), ("encoder.layer", "bert.encoder.layer"), _bert_settings,
         q="attention.self.query", k="attention.self.key", v="attention.self.value", o="attention.output.dense",
         attn="attention.self", mlp_in="intermediate.dense", mlp_out="output.dense",
         embeddings=(("embeddings.word_embeddings", False), ("embeddings.position_embeddings", False),
                     ("embeddings.token_type_embeddings", True)), embed_norm="embeddings.LayerNorm"),
    Arch("roberta", ("roberta", "xlm-roberta", "camembert"), ("encoder.layer", "roberta.encoder.layer"), _bert_settings,
         q="attention.self.query", k="attention.self.key", v="attention.self.value", o="attention.output.dense",
         attn="attention.self", mlp_in="intermediate.dense", mlp_out="output.dense",
         embeddings=(("embeddings.word_embeddings", False), ("embeddings.position_embeddings", False),
                     ("embeddings.token_type_embeddings", True)), embed_norm="embeddings.LayerNorm"),
    Arch("distilbert", ("distilbert",), ("transformer.layer", "distilbert.transformer.layer"), _distilbert_settings,
         q="attention.q_lin", k="attention.k_lin", v="attention.v_lin", o="attention.out_lin", attn="attention",
         mlp_in="ffn.lin1", mlp_out="ffn.lin2",
         embeddings=(("embeddings.word_embeddings", False), ("embeddings.position_embeddings", False)),
         embed_norm="embeddings.LayerNorm"),
    Arch("gpt2", ("gpt2",), ("h", "transformer.h"), _gpt2_settings, qkv="attn.c_attn", o="attn.c_proj", attn="attn",
         mlp_in="mlp.c_fc", mlp_out="mlp.c_proj", embeddings=(("wte", False), ("wpe", False))),
    Arch("gpt_neox", ("gpt_neox",), ("layers", "gpt_neox.layers"), _neox_settings, qkv="attention.query_key_value",
         qkv_layout="heads", o="attention.dense", attn="attention", mlp_in="mlp.dense_h_to_4h",
         mlp_out="mlp.dense_4h_to_h", embeddings=(("embed_in", False),)),
    Arch("opt", ("opt",), ("decoder.layers", "model.decoder.layers"), _opt_settings, q="self_attn.q_proj",
         k="self_attn.k_proj", v="self_attn.v_proj", o="self_attn.out_proj", attn="self_attn", mlp_in="fc1",
         mlp_out="fc2", embeddings=(("decoder.embed_tokens", False), ("decoder.embed_positions", False))),
    Arch("llama", ("llama", "mistral", "qwen2"), ("layers", "model.layers"), _llama_settings, q="self_attn.q_proj",
         k="self_attn.k_proj", v="self_attn.v_proj", o="self_attn.o_proj", attn="self_attn", mlp_in="mlp.up_proj",
         mlp_gate="mlp.gate_proj", mlp_out="mlp.down_proj", embeddings=(("embed_tokens", False),)),
    Arch("t5_encoder", ("t5",), ("encoder.block",), _t5_settings, q="layer.0.SelfAttention.q",
         k="layer.0.SelfAttention.k", v="layer.0.SelfAttention.v", o="layer.0.SelfAttention.o",
         attn="layer.0.SelfAttention", mlp_in="layer.1.DenseReluDense.wi", mlp_out="layer.1.DenseReluDense.wo",
         embeddings=(("shared", False),), model_cls=_t5_encoder),
    Arch("vit", ("vit",), ("layers", "encoder.layer", "vit.layers"), _vit_settings, q="attention.q_proj",
         k="attention.k_proj", v="attention.v_proj", o="attention.o_proj", attn="attention", mlp_in="mlp.fc1",
         mlp_out="mlp.fc2", embeddings=(("embeddings.position_embeddings", False),),
         patch="embeddings.patch_embeddings.projection"),
    Arch("modernbert", ("modernbert",), ("layers", "model.layers"), _modernbert_settings, qkv="attn.Wqkv",
         o="attn.Wo", attn="attn", mlp_in_gate="mlp.Wi", mlp_out="mlp.Wo",
         embeddings=(("embeddings.tok_embeddings", False),), embed_norm="embeddings.norm"),
)
for _a in _BUILTIN:
    register_arch(_a)


def builder(arch: Arch | None) -> Callable[[Any], Any]:
    """The function that builds a model of ``arch`` from its config."""
    return arch.model_cls if arch is not None and arch.model_cls is not None else _auto


# ------------------------------------------------------------------------------------ the generic path
_NAMES = {
    "q": ("q_proj", "query", "q_lin", "q", "wq"),
    "k": ("k_proj", "key", "k_lin", "k", "wk"),
    "v": ("v_proj", "value", "v_lin", "v", "wv"),
    "o": ("o_proj", "out_proj", "out_lin", "o", "wo", "c_proj", "dense"),
    "mlp_in": ("up_proj", "fc1", "c_fc", "lin1", "w1", "wi", "dense_h_to_4h", "fc_in"),
    "mlp_gate": ("gate_proj", "w3", "wi_0"),
    "mlp_out": ("down_proj", "fc2", "c_proj", "lin2", "w2", "wo", "dense_4h_to_h", "fc_out"),
}


def generic_arch(block: Any, layers_path: str) -> Arch | None:
    """Roles of an unregistered model's block found by common module names (``q_proj``/``query``/…,
    ``up_proj``/``fc1``/…); ``None`` when query, key and value are not all found. Norm placement and the
    activation are settled by the caller (the module path probes them)."""
    from torch import nn

    found: dict[str, str] = {}
    for name, mod in block.named_modules():
        if not isinstance(mod, nn.Linear) and type(mod).__name__ != "Conv1D":
            continue
        leaf = name.rsplit(".", 1)[-1]
        in_attn = any(t in name.lower() for t in ("attn", "attention"))
        for role, names in _NAMES.items():
            if leaf in names and role not in found:
                if role in ("q", "k", "v", "o") and not in_attn and leaf not in ("q_proj", "k_proj", "v_proj", "o_proj", "query", "key", "value"):
                    continue
                if role.startswith("mlp") and in_attn:
                    continue
                found[role] = name
                break
    if not all(r in found for r in ("q", "k", "v", "o")):
        return None
    attn = found["q"].rsplit(".", 1)[0] if "." in found["q"] else None
    return Arch("generic", (), (layers_path,), lambda config: _base(activation="gelu"), q=found["q"], k=found["k"],
                v=found["v"], o=found["o"], attn=attn, mlp_in=found.get("mlp_in"), mlp_gate=found.get("mlp_gate"),
                mlp_out=found.get("mlp_out"))
