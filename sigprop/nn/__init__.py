"""PyTorch twin of a :class:`sigprop.Spec` (needs the ``torch`` extra).

``TransformerStack(spec)`` builds the stack the theory describes (docs/theory.md §1, §3, §6, §7), initialised
with :func:`init_weights`; :class:`GainControlledAttention` is the centred attention as a drop-in module.
Probes live in :mod:`sigprop.measure`.
"""

from sigprop.nn.init import init_weights
from sigprop.nn.modules import (
    ACTIVATIONS,
    LN_EPS,
    MLP,
    AttentionProbs,
    Block,
    GainControlledAttention,
    SelfAttention,
    TransformerStack,
    activation_fn,
    allowed_keys,
)

__all__ = [
    "ACTIVATIONS",
    "LN_EPS",
    "MLP",
    "AttentionProbs",
    "Block",
    "GainControlledAttention",
    "SelfAttention",
    "TransformerStack",
    "activation_fn",
    "allowed_keys",
    "init_weights",
]
