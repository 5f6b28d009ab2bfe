"""Initialisation of the torch twin, exactly as in Giorlandino & Goldt (docs/theory.md §1), sigprop convention.

With d the model width, T = ``spec.seq_len``, ``hidden`` the MLP width, all entries i.i.d.:

* ``W_Q, W_K ~ N(0, σ²)`` with ``σ = sqrt(β) (ln T)^{1/4} / sqrt(d)`` — ``/sqrt(d)``, **not** ``/sqrt(d_h)``.
  With logits ``(x W_Q)(x W_K)ᵀ / sqrt(d_h)`` per head, ``Var(a_ts) = β² ln T q²`` for tokens with squared
  norm per dimension q, whatever the number of heads (the authors' ``/sqrt(d_h)`` agrees for one head).
  No Q/K biases.
* ``W_V ~ N(0, σ_v²/d)``, ``b_V ~ N(0, σ_bV²)`` (``spec.bias_v2``: ``sigma_bv2`` or else ``sigma_b2``).
* optional ``W_O ~ N(0, 1/d)`` (no bias), which leaves the value variance σ_v² unchanged.
* MLP ``W_1 ~ N(0, σ_w²/d)``, ``W_2 ~ N(0, σ_w²/hidden)``, ``b_1, b_2 ~ N(0, σ_b²)``.
* token embeddings ``N(0, emb_std²)``, position embeddings ``N(0, pos_std²)``; LayerNorm γ = 1, β = 0.

Every draw uses the given ``torch.Generator`` in module order, so a seed fixes the whole model and the
global RNG is untouched. Draws are made in float64 and cast, so the values do not depend on ``dtype``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from sigprop.spec import Spec

__all__ = ["init_weights", "normal_"]


@torch.no_grad()
def normal_(tensor: torch.Tensor, std: float, generator: torch.Generator) -> torch.Tensor:
    """Fill ``tensor`` with ``N(0, std²)`` draws from ``generator`` (std 0 gives zeros)."""
    draw = torch.empty(tensor.shape, dtype=torch.float64).normal_(0.0, 1.0, generator=generator)
    tensor.copy_(draw.mul_(float(std)))
    return tensor


@torch.no_grad()
def init_weights(
    model: nn.Module,
    spec: Spec,
    generator: torch.Generator | None = None,
    *,
    emb_std: float | None = None,
    pos_std: float | None = None,
) -> nn.Module:
    """Initialise every sigprop attention, MLP, LayerNorm and embedding inside ``model`` (see module doc).

    Works for a :class:`~sigprop.nn.TransformerStack` and for any model containing
    :class:`~sigprop.nn.SelfAttention` / :class:`~sigprop.nn.GainControlledAttention` / :class:`~sigprop.nn.MLP`
    modules. The width d used in the formulas is each module's own input width. ``emb_std``/``pos_std``
    default to the model's attributes of the same name (0.1 if absent). Returns ``model``.
    """
    from sigprop.nn.modules import MLP, SelfAttention, TransformerStack

    if spec.is_grid:
        raise ValueError(f"init_weights needs a scalar Spec, got a grid of shape {spec.shape}")
    if generator is None:
        generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,)).item()))
    beta, lnT = float(spec.beta), math.log(spec.seq_len)
    sv2, sw2, sb2, sbv2 = (
        float(spec.sigma_v2),
        float(spec.sigma_w2),
        float(spec.sigma_b2),
        float(spec.bias_v2),
    )
    for module in model.modules():
        if isinstance(module, SelfAttention):
            d = module.d
            std_qk = math.sqrt(beta) * lnT**0.25 / math.sqrt(d)
            normal_(module.q.weight, std_qk, generator)
            normal_(module.k.weight, std_qk, generator)
            normal_(module.v.weight, math.sqrt(sv2 / d), generator)
            normal_(module.v.bias, math.sqrt(sbv2), generator)
            if module.o is not None:
                normal_(module.o.weight, math.sqrt(1.0 / d), generator)
        elif isinstance(module, MLP):
            d, hidden = module.fc1.in_features, module.fc1.out_features
            normal_(module.fc1.weight, math.sqrt(sw2 / d), generator)
            normal_(module.fc1.bias, math.sqrt(sb2), generator)
            normal_(module.fc2.weight, math.sqrt(sw2 / hidden), generator)
            normal_(module.fc2.bias, math.sqrt(sb2), generator)
        elif isinstance(module, nn.LayerNorm) and module.elementwise_affine:
            module.weight.fill_(1.0)
            if module.bias is not None:
                module.bias.zero_()
    if isinstance(model, TransformerStack) and model.token_embedding is not None:
        e_std = emb_std if emb_std is not None else getattr(model, "emb_std", 0.1)
        p_std = pos_std if pos_std is not None else getattr(model, "pos_std", 0.1)
        normal_(model.token_embedding.weight, e_std, generator)
        normal_(model.position_embedding.weight, p_std, generator)
    return model
