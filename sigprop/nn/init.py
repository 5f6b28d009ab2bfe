"""Initialisation of the torch twin, exactly as in Giorlandino & Goldt (docs/theory.md §1), sigprop convention.

With d the model width, T = ``spec.seq_len``, ``hidden`` the MLP width, all entries i.i.d.:

* ``W_Q, W_K ~ N(0, σ²)`` with ``σ = sqrt(β) (ln T)^{1/4} / sqrt(d)`` — ``/sqrt(d)``, **not** ``/sqrt(d_h)``
  (:func:`sigprop.spec.std_from_beta`). With logits ``(x W_Q)(x W_K)ᵀ / sqrt(d_h)`` per head,
  ``Var(a_ts) = β² ln T q²`` for tokens with squared norm per dimension q, whatever the number of heads
  (the authors' ``/sqrt(d_h)`` agrees for one head). No Q/K biases. With grouped-query attention
  (``spec.kv_heads``) ``W_K`` has ``kv_heads · d_h`` columns drawn the same way.
* ``W_V ~ N(0, σ_v²/d)``, ``b_V ~ N(0, σ_bV²)`` (``spec.bias_v2``: ``sigma_bv2`` or else ``sigma_b2``).
* optional ``W_O ~ N(0, 1/d)`` (no bias), which leaves the value variance σ_v² unchanged.
* MLP ``W_1 ~ N(0, σ_w²/d)``, ``W_2 ~ N(0, σ_w,out²/hidden)`` (``spec.w2_out``: ``sigma_w2_out`` or else
  σ_w²), ``b_1, b_2 ~ N(0, σ_b²)``; a gated MLP draws ``W_g, W_u ~ N(0, σ_w²/d)``, ``b_g, b_u ~ N(0, σ_b²)``.
* token embeddings ``N(0, emb_std²)``, position embeddings ``N(0, pos_std²)``; norm gains γ = 1, shifts 0.

Each twin module (:mod:`sigprop.nn.modules`) draws its own parameters in ``init_from_spec(spec, generator)``,
next to its definition; :func:`init_weights` walks a model and calls it. Every draw uses the given
``torch.Generator`` in module order, so a seed fixes the whole model and the global RNG is untouched.
Draws are made in float64 and cast, so the values do not depend on ``dtype``.

This module imports nothing from :mod:`sigprop.nn.modules` (the modules import it: one-way).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import nn

from sigprop.spec import Spec

__all__ = ["EmbeddingInit", "SpecInit", "init_weights", "normal_", "reset_norm_"]


@torch.no_grad()
def normal_(tensor: torch.Tensor, std: float, generator: torch.Generator) -> torch.Tensor:
    """Fill ``tensor`` with ``N(0, std²)`` draws from ``generator`` (std 0 gives zeros)."""
    draw = torch.empty(tensor.shape, dtype=torch.float64).normal_(0.0, 1.0, generator=generator)
    tensor.copy_(draw.mul_(float(std)))
    return tensor


@runtime_checkable
class SpecInit(Protocol):
    """A module that draws its own parameters from a scalar :class:`Spec` (the twin's modules)."""

    def init_from_spec(self, spec: Spec, generator: torch.Generator) -> None: ...


@runtime_checkable
class EmbeddingInit(Protocol):
    """A model with token/position embeddings drawn after all blocks (:class:`~sigprop.nn.TransformerStack`)."""

    def init_embeddings(self, generator: torch.Generator, emb_std: float | None, pos_std: float | None) -> None: ...


@torch.no_grad()
def reset_norm_(module: nn.Module) -> None:
    """γ = 1 and shift 0 for an affine ``LayerNorm``/``RMSNorm`` (no-op without affine parameters)."""
    if isinstance(module, (nn.LayerNorm, nn.RMSNorm)) and module.elementwise_affine:
        module.weight.fill_(1.0)
        bias = getattr(module, "bias", None)  # RMSNorm has no shift; LayerNorm(bias=False) has None
        if isinstance(bias, torch.Tensor):
            bias.zero_()


@torch.no_grad()
def init_weights(
    model: nn.Module,
    spec: Spec,
    generator: torch.Generator | None = None,
    *,
    emb_std: float | None = None,
    pos_std: float | None = None,
) -> nn.Module:
    """Initialise every sigprop attention, MLP, norm and embedding inside ``model`` (see module doc).

    Works for a :class:`~sigprop.nn.TransformerStack` and for any model containing
    :class:`~sigprop.nn.SelfAttention` / :class:`~sigprop.nn.GainControlledAttention` /
    :class:`~sigprop.nn.MLP` / :class:`~sigprop.nn.GatedMLP` modules. The width d used in the formulas is
    each module's own input width. ``emb_std``/``pos_std`` default to the model's attributes of the same
    name (0.1 if absent). Returns ``model``.
    """
    if spec.is_grid:
        raise ValueError(f"init_weights needs a scalar Spec, got a grid of shape {spec.shape}")
    if generator is None:
        generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,)).item()))
    for module in model.modules():
        if isinstance(module, SpecInit):
            module.init_from_spec(spec, generator)
        else:
            reset_norm_(module)
    if isinstance(model, EmbeddingInit):
        model.init_embeddings(generator, emb_std, pos_std)
    return model
