"""A light, ``transformers``-free view of a built-in family's config: the fast path of ``--no-measure``.

A theory-only diagnosis of a checkpoint name or a ``model_type`` reads a few config fields (sizes, the
init std, activation, rotary and window settings; the closed forms of :mod:`sigprop.diagnose.formulas`).
Building the real ``transformers`` config for that imports ``transformers`` and, through it, ``torch``
(seconds). :class:`LightConfig` holds the same fields instead: the published values of the checkpoint
table, the config class's defaults for the rest (:data:`DEFAULTS`, restated from ``transformers`` 5.x),
and the fields each class derives in its ``__init__`` (rotary parameters, T5's activation, ModernBERT's
layer pattern, …; :func:`_derive`). ``tests/diagnose/test_light.py`` checks, family by family, that
every field the diagnosis reads has the value the real config class gives it, and that the diagnosis
through the light view equals the one through ``transformers`` — so the two paths cannot drift apart.

Anything outside this view (an unknown family, an override of a field the view does not model, a value of
the wrong type, an inconsistent size) returns ``None`` from :func:`light_config` and the caller uses
``transformers`` as before. :func:`sigprop.diagnose.resolve.full_config` turns a light view into the real
config when a model must be built.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["DEFAULTS", "LightConfig", "light_config"]

#: per ``model_type``: the defaults of the ``transformers`` config class for every field a theory-only
#: diagnosis reads (None where the class derives the value in ``__init__``; see :func:`_derive`)
DEFAULTS: dict[str, dict[str, Any]] = {
    "bert": dict(hidden_act="gelu", hidden_size=768, initializer_range=0.02, intermediate_size=3072,
                 max_position_embeddings=512, num_attention_heads=12, num_hidden_layers=12, type_vocab_size=2,
                 is_decoder=False, add_cross_attention=False, is_encoder_decoder=False),
    "distilbert": dict(activation="gelu", dim=768, hidden_dim=3072, initializer_range=0.02,
                       max_position_embeddings=512, n_heads=12, n_layers=6, sinusoidal_pos_embds=False,
                       is_encoder_decoder=False),
    "gpt2": dict(activation_function="gelu_new", initializer_range=0.02, n_positions=1024, n_embd=768, n_head=12,
                 n_inner=None, n_layer=12, scale_attn_by_inverse_layer_idx=False, scale_attn_weights=True,
                 add_cross_attention=False, is_encoder_decoder=False),
    "gpt_neox": dict(hidden_act="gelu", hidden_size=6144, initializer_range=0.02, intermediate_size=24576,
                     max_position_embeddings=2048, num_attention_heads=64, num_hidden_layers=44,
                     use_parallel_residual=True, is_decoder=False, is_encoder_decoder=False),
    "opt": dict(activation_function="relu", do_layer_norm_before=True, ffn_dim=3072, hidden_size=768, init_std=0.02,
                max_position_embeddings=2048, num_attention_heads=12, num_hidden_layers=12, word_embed_proj_dim=None,
                is_encoder_decoder=False),
    "llama": dict(head_dim=None, hidden_act="silu", hidden_size=4096, initializer_range=0.02, intermediate_size=11008,
                  max_position_embeddings=2048, num_attention_heads=32, num_hidden_layers=32,
                  num_key_value_heads=None, is_encoder_decoder=False),
    "mistral": dict(head_dim=None, hidden_act="silu", hidden_size=4096, initializer_range=0.02,
                    intermediate_size=14336, max_position_embeddings=131072, num_attention_heads=32,
                    num_hidden_layers=32, num_key_value_heads=8, sliding_window=4096, is_encoder_decoder=False),
    "t5": dict(d_ff=2048, d_kv=64, d_model=512, feed_forward_proj="relu", initializer_factor=1.0, num_heads=8,
               num_layers=6, num_decoder_layers=None, is_decoder=False, is_encoder_decoder=True),
    "vit": dict(hidden_act="gelu", hidden_size=768, image_size=224, initializer_range=0.02, intermediate_size=3072,
                num_attention_heads=12, num_channels=3, num_hidden_layers=12, patch_size=16,
                is_encoder_decoder=False),
    "modernbert": dict(hidden_activation="gelu", hidden_size=768, initializer_cutoff_factor=2.0,
                       initializer_range=0.02, intermediate_size=1152, layer_types=None, local_attention=128,
                       max_position_embeddings=8192, num_attention_heads=12, num_hidden_layers=22,
                       is_encoder_decoder=False),
}
DEFAULTS["roberta"] = dict(DEFAULTS["bert"])

#: the classes' ``attribute_map``: generic names read through to the family's own field
ALIASES: dict[str, dict[str, str]] = {
    "distilbert": {"hidden_size": "dim", "num_attention_heads": "n_heads", "num_hidden_layers": "n_layers"},
    "gpt2": {"hidden_size": "n_embd", "max_position_embeddings": "n_positions", "num_attention_heads": "n_head",
             "num_hidden_layers": "n_layer"},
    "t5": {"hidden_size": "d_model", "num_attention_heads": "num_heads", "num_hidden_layers": "num_layers",
           "head_dim": "d_kv"},
}

#: constructor arguments each class folds into other fields instead of keeping (see :func:`_derive`)
_ABSORBED: dict[str, tuple[str, ...]] = {
    "gpt_neox": ("rotary_pct", "rotary_emb_base"),
    "llama": ("rope_theta",),
    "mistral": ("rope_theta",),
    "modernbert": ("global_rope_theta", "local_rope_theta", "global_attn_every_n_layers"),
}


class LightConfig:
    """Attribute view of a config: ``model_type`` plus plain fields, with the class's aliases
    (``num_hidden_layers`` → ``n_layer`` for GPT-2, …) for reading and writing. ``recipe`` =
    ``(model_type, constructor fields, depth)`` rebuilds the real config
    (:func:`sigprop.diagnose.resolve.full_config`)."""

    def __init__(self, model_type: str, values: dict[str, Any], recipe: tuple[str, dict[str, Any], int | None]):
        object.__setattr__(self, "_aliases", ALIASES.get(model_type, {}))
        object.__setattr__(self, "recipe", recipe)
        object.__setattr__(self, "model_type", model_type)
        for k, v in values.items():
            setattr(self, k, v)

    def __getattr__(self, name: str) -> Any:  # reached only when the attribute is not set
        aliases = self.__dict__.get("_aliases", {})
        if name in aliases:
            return getattr(self, aliases[name])
        raise AttributeError(f"{type(self).__name__}({self.__dict__.get('model_type')!r}) has no field {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, self.__dict__.get("_aliases", {}).get(name, name), value)

    def fields(self) -> dict[str, Any]:
        """The fields as a dict (aliases resolved, bookkeeping left out)."""
        return {k: v for k, v in self.__dict__.items() if k not in ("_aliases", "recipe")}

    def __repr__(self) -> str:
        return f"LightConfig({self.fields()!r})"


def _derive(model_type: str, v: dict[str, Any], given: dict[str, Any]) -> None:
    """Fields the ``transformers`` classes compute in ``__init__`` from others (in place on ``v``)."""
    if model_type == "gpt_neox":
        v["rope_parameters"] = {"rope_theta": given.get("rotary_emb_base", 10000.0),
                                "partial_rotary_factor": given.get("rotary_pct", 0.25), "rope_type": "default"}
    elif model_type in ("llama", "mistral"):
        v["rope_parameters"] = {"rope_theta": given.get("rope_theta", 10000.0), "rope_type": "default"}
        if v["head_dim"] is None:
            v["head_dim"] = v["hidden_size"] // v["num_attention_heads"]
        if v["num_key_value_heads"] is None:
            v["num_key_value_heads"] = v["num_attention_heads"]
    elif model_type == "modernbert":
        v["rope_parameters"] = {
            "full_attention": {"rope_type": "default", "rope_theta": given.get("global_rope_theta", 160000.0)},
            "sliding_attention": {"rope_type": "default", "rope_theta": given.get("local_rope_theta", 10000.0)}}
        every = given.get("global_attn_every_n_layers", 3)
        if "global_attn_every_n_layers" in given:  # kept as an attribute only when given
            v["global_attn_every_n_layers"] = every
        if v["layer_types"] is None:
            v["layer_types"] = ["sliding_attention" if i % every else "full_attention"
                                for i in range(v["num_hidden_layers"])]
    elif model_type == "t5":
        if v["num_decoder_layers"] is None:
            v["num_decoder_layers"] = v["num_layers"]
        act = v["feed_forward_proj"].split("-")
        v["dense_act_fn"] = "gelu_new" if v["feed_forward_proj"] == "gated-gelu" else act[-1]
        v["is_gated_act"] = act[0] == "gated"
    elif model_type == "opt" and v["word_embed_proj_dim"] is None:
        v["word_embed_proj_dim"] = v["hidden_size"]


def _same_kind(value: Any, default: Any) -> bool:
    if default is None:
        return value is None or (isinstance(value, int) and not isinstance(value, bool))
    if isinstance(default, bool) or isinstance(value, bool):
        return type(value) is type(default)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return type(value) is type(default)


def light_config(model_type: str, fields: dict[str, Any], known: set[str] | frozenset[str] = frozenset(),
                 depth: int | None = None) -> LightConfig | None:
    """The light view of ``AutoConfig.for_model(model_type, **fields)``, or ``None`` when it would not be
    exact: an unknown family, a field outside :data:`DEFAULTS`, the absorbed constructor arguments and
    ``known`` (fields the checkpoint table publishes, kept verbatim by the classes), a value of another
    type than the default, or sizes the class would reject (width not divisible by the heads).
    ``depth`` is stored in the recipe only (the caller applies it)."""
    defaults = DEFAULTS.get(model_type)
    if defaults is None:
        return None
    aliases = ALIASES.get(model_type, {})
    given = {aliases.get(k, k): val for k, val in fields.items()}
    absorbed = _ABSORBED.get(model_type, ())
    values = copy.deepcopy(defaults)
    for k, val in given.items():
        if k in absorbed:
            if isinstance(val, bool) or not isinstance(val, (int, float)):
                return None
            continue
        if k in defaults:
            if not _same_kind(val, defaults[k]):
                return None
        elif k not in known or k == "rope_parameters":
            return None
        values[k] = val
    width = values.get("hidden_size", values.get("dim", values.get("n_embd")))
    heads = values.get("num_attention_heads", values.get("n_heads", values.get("n_head")))
    if isinstance(width, int) and isinstance(heads, int) and (heads < 1 or width % heads):
        return None
    _derive(model_type, values, given)
    return LightConfig(model_type, values, (model_type, dict(fields), depth))
