"""PyTorch twin of a :class:`sigprop.Spec` (needs the ``torch`` extra).

``TransformerStack(spec)`` builds the stack the theory describes (docs/theory.md §1, §3, §6, §7): every
:class:`Block` follows the one block recipe :func:`sigprop.spec.recipe` (sequential or parallel, post- or
pre-norm, LayerNorm or RMSNorm), with softmax or centred attention (causal, sliding window, RoPE,
grouped-query) and a plain or gated MLP, initialised with :func:`init_weights`.
:class:`GainControlledAttention` is the centred attention as a drop-in module. Probes live in
:mod:`sigprop.measure`.

Imports run one way: ``modules → init → spec``.
"""

from sigprop.nn.init import init_weights
from sigprop.nn.modules import (
    ACTIVATIONS,
    LN_EPS,
    MLP,
    AttentionProbs,
    Block,
    GainControlledAttention,
    GatedMLP,
    Rotary,
    SelfAttention,
    TransformerStack,
    activation_fn,
    allowed_keys,
    make_mlp,
    make_norm,
    rope_dims,
)

__all__ = [
    "ACTIVATIONS",
    "LN_EPS",
    "MLP",
    "AttentionProbs",
    "Block",
    "GainControlledAttention",
    "GatedMLP",
    "Rotary",
    "SelfAttention",
    "TransformerStack",
    "activation_fn",
    "allowed_keys",
    "init_weights",
    "make_mlp",
    "make_norm",
    "rope_dims",
]
