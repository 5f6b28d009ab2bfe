"""PyTorch twin of a :class:`sigprop.Spec`: the transformer stack the theory describes, at initialisation.

Block structure (docs/theory.md §3): every :class:`Block` follows the one recipe :func:`sigprop.spec.recipe`
that the theory map follows too, a tuple of sublayers ``x ← N_out(α x + Σ_b F_b(N_in x))`` with α on the
**skip** path and no final norm after the stack, so that the hidden state after block ℓ is exactly the
theory's state after ℓ block updates:

* sequential post-LN: ``x ← LN(α_SA x + SA(x))``, then ``x ← LN(α_MLP x + MLP(x))``;
* sequential pre-LN:  ``x ← α_SA x + SA(LN₁ x)``,  then ``x ← α_MLP x + MLP(LN₂ x)``;
* parallel pre-LN (GPT-NeoX/Pythia, GPT-J): ``x ← α_SA x + SA(LN₁ x) + MLP(LN₂ x)``, each branch reading
  its own norm of the stream; parallel post-LN: ``x ← LN₁(α_SA x + SA(x) + MLP(x))``.

Norms are numbered ``ln1, ln2`` in the order the recipe uses them.

Self-attention per head h (``d_h = d / heads``): logits ``a_ts = (R_t x_t W_Q)·(R_s x_s W_K) / sqrt(d_h)``
(no Q/K bias; ``R_t`` the RoPE rotation of position t, identity without RoPE), ``A = softmax_s(a)`` over the
keys row t may see (causal, sliding-window and padding masks), values ``V = x W_V + b_V``, output
``concat_h(A V)`` (times an optional ``W_O``). With grouped-query attention (``kv_heads`` < ``heads``) the
key and value projections have ``kv_heads`` heads and query head h uses key/value head
``h // (heads / kv_heads)`` (HuggingFace's ``repeat_kv`` order). Gain-controlled ("centred") attention
(docs/theory.md §6) outputs ``Σ_s (A_ts − 1/n_t) v_s``, where ``n_t`` is the number of keys row t may see.

Norms: ``nn.LayerNorm`` or ``nn.RMSNorm`` (``spec.norm_type``), ``eps=LN_EPS``, no affine by default.
``LN_EPS = 1e-6`` (not PyTorch's 1e-5): it is negligible against the unit per-dimension variance of every
state the theory tracks, and smaller than the 1e-5 of BERT so that the measured ``q`` after LN is 1 to
~1e-6 (Llama's ``rms_norm_eps`` is the same 1e-6).

MLPs: ``W_2 φ(W_1 x + b_1) + b_2`` (:class:`MLP`) or gated ``W_2 (φ(W_g x + b_g) ⊙ (W_u x + b_u)) + b_2``
(:class:`GatedMLP`; ``swiglu``: φ = SiLU, ``geglu``: φ = exact GELU).

The softmax probabilities come out of a tiny :class:`AttentionProbs` submodule so that a forward hook on
``block.attn.probs`` sees the attention matrix ``A`` (shape ``(B, heads, T, T)``) without changing the
output: the explicit path ``softmax(QKᵀ/sqrt(d_h)) V`` always runs by default, so outputs with and without
probes are bit-identical. Setting ``attn.fast = True`` uses PyTorch's fused ``scaled_dot_product_attention``
whenever nothing hooks ``attn.probs`` and no dropout is active; it agrees to float rounding (~1e-6, tested)
but gains only a few % on CPU (``benchmarks/bench_torch.py``).

Each module draws its own parameters in ``init_from_spec(spec, generator)`` (formulas in
:mod:`sigprop.nn.init`, which walks a model and calls them).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sigprop.nn.init import init_weights, normal_
from sigprop.spec import GATED, Spec, recipe, rope_dims, std_from_beta

__all__ = [
    "LN_EPS",
    "ACTIVATIONS",
    "activation_fn",
    "make_norm",
    "allowed_keys",
    "rope_dims",
    "Rotary",
    "AttentionProbs",
    "SelfAttention",
    "GainControlledAttention",
    "MLP",
    "GatedMLP",
    "init_mlp_linears",
    "make_mlp",
    "Block",
    "TransformerStack",
]

#: LayerNorm / RMSNorm epsilon used throughout the torch twin (see module docstring).
LN_EPS = 1e-6


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


#: activation names of :class:`Spec` mapped to torch functions. ``gelu`` is the exact (erf) GELU
#: ``x Φ(x)``; ``erf`` is the plain error function ``erf(x)``. The gated names (``swiglu``, ``geglu``)
#: are MLP kinds, not activations: their gate nonlinearity is ``ACTIVATIONS[GATED[name]]``.
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "gelu": F.gelu,
    "silu": F.silu,
    "tanh": torch.tanh,
    "erf": torch.erf,
    "identity": _identity,
}


def activation_fn(activation: str | Callable[[Any], Any]) -> Callable[[torch.Tensor], torch.Tensor]:
    """Torch function for ``Spec.activation``: a name from :data:`ACTIVATIONS`, or a callable applied as given."""
    if isinstance(activation, str):
        try:
            return ACTIVATIONS[activation.lower()]
        except KeyError:
            hint = f" ({activation!r} is a gated MLP: use GatedMLP or make_mlp)" if activation.lower() in GATED else ""
            raise ValueError(
                f"activation {activation!r} has no torch twin; known: {sorted(ACTIVATIONS)}{hint}"
            ) from None
    if callable(activation):
        return activation
    raise ValueError(f"activation must be a name or a callable; got {activation!r}")


def make_norm(d: int, norm_type: str = "layernorm", affine: bool = False) -> nn.Module:
    """``nn.LayerNorm`` or ``nn.RMSNorm`` of width d with ``eps=LN_EPS`` (``spec.norm_type``).

    RMSNorm is ``x / sqrt(mean_i x_i² + eps)``: no mean subtraction, so its output has mean square 1
    exactly (up to eps), where LayerNorm's output has variance 1 over the d coordinates.
    """
    if norm_type == "layernorm":
        return nn.LayerNorm(d, eps=LN_EPS, elementwise_affine=affine)
    if norm_type == "rmsnorm":
        return nn.RMSNorm(d, eps=LN_EPS, elementwise_affine=affine)
    raise ValueError(f"norm_type must be 'layernorm' or 'rmsnorm'; got {norm_type!r}")


def allowed_keys(
    T: int,
    *,
    causal: bool,
    attention_mask: torch.Tensor | None,
    device: torch.device | None = None,
    window: int | None = None,
) -> torch.Tensor | None:
    """Boolean ``(B or 1, 1, T, T)`` mask, True where query row t may attend to key s; ``None`` if all may.

    ``window`` W (sliding-window attention; a row sees at most W keys): with ``causal`` row t sees keys
    ``t − W < s ≤ t`` (positions ``max(1, t−W+1)..t`` counted from 1, so ``min(t, W)`` keys; Mistral's
    ``sliding_window``); without it the band ``−⌊(W−1)/2⌋ ≤ s − t ≤ ⌈(W−1)/2⌉`` (symmetric for odd W:
    ModernBERT's ``local_attention`` is W − 1), W keys for rows away from the ends and fewer near them
    (the band is clipped at the sequence ends, not shifted).
    ``attention_mask`` is ``(B, T)`` with 1 (or True) for real tokens and 0 for padding; padded keys are
    excluded. Padded *query* rows still attend to the real keys (their outputs are ignored by the probes).
    """
    mask = None
    if causal or window is not None:
        t = torch.arange(T, device=device)
        diff = t[:, None] - t[None, :]  # t − s
        band = torch.ones(T, T, dtype=torch.bool, device=device)
        if causal:
            band = diff >= 0
        if window is not None:
            if int(window) < 1:
                raise ValueError(f"window must be ≥ 1; got {window}")
            if causal:
                band = band & (diff < window)
            else:  # s − t in [−⌊(W−1)/2⌋, ⌈(W−1)/2⌉]
                band = (-diff >= -((window - 1) // 2)) & (-diff <= window - 1 - (window - 1) // 2)
        mask = band[None, None]
    if attention_mask is not None:
        if attention_mask.ndim != 2 or attention_mask.shape[-1] != T:
            raise ValueError(f"attention_mask must have shape (B, {T}); got {tuple(attention_mask.shape)}")
        keys = attention_mask.to(device=device).bool()[:, None, None, :]
        mask = keys if mask is None else (mask & keys)
    return mask


# ------------------------------------------------------------------------------------------------ RoPE
# (the rotated-dimension rule r = int(f · d_h), even, is sigprop.spec.rope_dims, re-exported here)
class Rotary(nn.Module):
    """Rotary position embedding (RoPE) in HuggingFace/Llama's "rotate_half" convention; no parameters.

    Of each head's ``d_h`` dimensions the first ``r`` (:func:`rope_dims`) are rotated, the rest pass through.
    Frequencies ``θ_i = theta^{−2i/r}``, i = 0..r/2−1; dimension i is paired with i + r/2 and position t
    (0-based) rotates the pair by the angle ``t θ_i``:
    ``x_i' = x_i cos(t θ_i) − x_{i+r/2} sin(t θ_i)``, ``x_{i+r/2}' = x_{i+r/2} cos(t θ_i) + x_i sin(t θ_i)``.
    A rotation preserves norms, and ``(R_t q)·(R_s k)`` depends on t, s only through ``t − s``.
    """

    def __init__(self, d_head: int, fraction: float = 1.0, theta: float = 10000.0) -> None:
        super().__init__()
        if not theta >= 1.0:
            raise ValueError(f"rope_theta must be ≥ 1; got {theta}")
        self.d_head, self.fraction, self.theta = int(d_head), float(fraction), float(theta)
        self.r = rope_dims(self.d_head, self.fraction)
        self._cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def frequencies(self) -> torch.Tensor:
        """``θ_i = theta^{−2i/r}``, i = 0..r/2−1 (float64)."""
        return self.theta ** (-torch.arange(0, self.r, 2, dtype=torch.float64) / self.r)

    def cos_sin(self, T: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """``cos, sin`` of shape ``(T, r)`` (angles computed in float64, then cast)."""
        key = (T, device, dtype)
        if key not in self._cache:
            ang = torch.arange(T, dtype=torch.float64)[:, None] * self.frequencies()[None, :]
            ang = torch.cat([ang, ang], dim=-1)
            self._cache = {key: (ang.cos().to(device=device, dtype=dtype), ang.sin().to(device=device, dtype=dtype))}
        return self._cache[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(..., T, d_h)`` → the same shape, position t = 0..T−1 along the second-last axis."""
        if self.r == 0:
            return x
        cos, sin = self.cos_sin(x.shape[-2], x.device, x.dtype)
        rot, rest = x[..., : self.r], x[..., self.r :]
        half = self.r // 2
        turned = torch.cat([-rot[..., half:], rot[..., :half]], dim=-1)
        return torch.cat([rot * cos + turned * sin, rest], dim=-1)


# ------------------------------------------------------------------------------------------- attention
class AttentionProbs(nn.Module):
    """``A = softmax_s(logits)`` with disallowed keys set to −inf first; rows with no allowed key give 0.

    It exists so that ``register_forward_hook`` on it captures ``A`` (``(B, heads, T, T)``).
    """

    def forward(self, logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None:
            return torch.softmax(logits, dim=-1)
        A = torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=-1)
        # a row that sees no key is all −inf → NaN; define its attention as 0
        return A.masked_fill(~mask.any(dim=-1, keepdim=True), 0.0)


def _has_hooks(module: nn.Module) -> bool:
    if module._forward_hooks or module._forward_pre_hooks:
        return True
    glob = nn.modules.module
    return bool(
        getattr(glob, "_global_forward_hooks", None) or getattr(glob, "_global_forward_pre_hooks", None)
    )


class SelfAttention(nn.Module):
    """Multi-head softmax self-attention in the convention of docs/theory.md §1 (no Q/K bias, value bias, no W_O).

    Parameters
    ----------
    d : model width d.
    heads : number of query heads (divides d); ``d_h = d / heads`` and logits are scaled by ``1/sqrt(d_h)``.
    centred : gain-controlled attention, output ``Σ_s (A_ts − 1/n_t) v_s`` (docs/theory.md §6).
    causal : decoder mask (row t sees keys s ≤ t).
    out_proj : add an output projection ``W_O`` (no bias; init variance 1/d leaves σ_v² unchanged).
    dropout : dropout on ``A`` (after :attr:`probs`, so hooks see the clean ``A``) and on the output.
    fast : use the fused ``scaled_dot_product_attention`` when no hook is on :attr:`probs` (default off,
        so that probes never change outputs even by rounding).
    kv_heads : key/value heads (grouped-query attention; divides ``heads``); ``None`` = ``heads``.
    rope_fraction, rope_theta : RoPE on q and k (:class:`Rotary`); fraction 0 = none.
    window : sliding-window width W (see :func:`allowed_keys`); ``None`` = none.

    Attributes ``q`` (``W_Q``, d → d), ``k`` (``W_K``, d → kv_heads·d_h, no bias), ``v`` (``W_V``, ``b_V``),
    ``o`` (``W_O`` or ``None``), ``rotary`` (:class:`Rotary` or ``None``), ``probs`` (:class:`AttentionProbs`).
    Initialise with :func:`sigprop.nn.init_weights` (β, σ_v², σ_bV²) — PyTorch's default Linear init is
    **not** the theory's.
    """

    def __init__(
        self,
        d: int,
        heads: int = 1,
        *,
        centred: bool = False,
        causal: bool = False,
        out_proj: bool = False,
        dropout: float = 0.0,
        fast: bool = False,
        kv_heads: int | None = None,
        rope_fraction: float = 0.0,
        rope_theta: float = 10000.0,
        window: int | None = None,
    ) -> None:
        super().__init__()
        if d < 1 or heads < 1 or d % heads:
            raise ValueError(f"heads must divide d; got d={d}, heads={heads}")
        kv = heads if kv_heads is None else int(kv_heads)
        if not 1 <= kv <= heads or heads % kv:
            raise ValueError(f"kv_heads must divide heads={heads}; got {kv_heads!r}")
        if window is not None and int(window) < 1:
            raise ValueError(f"window must be ≥ 1 or None; got {window!r}")
        self.d, self.heads, self.d_head, self.kv_heads = d, heads, d // heads, kv
        self.centred, self.causal = bool(centred), bool(causal)
        self.window = None if window is None else int(window)
        #: use ``F.scaled_dot_product_attention`` when nothing hooks ``probs`` and dropout is inactive
        self.fast = fast
        self.q = nn.Linear(d, d, bias=False)
        self.k = nn.Linear(d, kv * self.d_head, bias=False)
        self.v = nn.Linear(d, kv * self.d_head, bias=True)
        self.o = nn.Linear(d, d, bias=False) if out_proj else None
        self.rotary = Rotary(self.d_head, rope_fraction, rope_theta) if rope_fraction > 0 else None
        self.probs = AttentionProbs()
        self.attn_dropout = nn.Dropout(dropout)
        self.out_dropout = nn.Dropout(dropout)

    @torch.no_grad()
    def init_from_spec(self, spec: Spec, generator: torch.Generator) -> None:
        """``W_Q, W_K ~ N(0, β (ln T)^{1/2}/d)``, ``W_V ~ N(0, σ_v²/d)``, ``b_V ~ N(0, σ_bV²)``, ``W_O ~ N(0, 1/d)``."""
        d = self.d
        std_qk = std_from_beta(float(spec.beta), width=d, seq_len=spec.seq_len)
        normal_(self.q.weight, std_qk, generator)
        normal_(self.k.weight, std_qk, generator)
        normal_(self.v.weight, math.sqrt(float(spec.sigma_v2) / d), generator)
        normal_(self.v.bias, math.sqrt(float(spec.bias_v2)), generator)
        if self.o is not None:
            normal_(self.o.weight, math.sqrt(1.0 / d), generator)

    def _split(self, x: torch.Tensor, heads: int) -> torch.Tensor:
        B, T, _ = x.shape
        return x.view(B, T, heads, self.d_head).transpose(1, 2)  # (B, H, T, d_h)

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-head ``q, k, v`` ``(B, heads, T, d_h)``: RoPE on q and k, key/value heads repeated for GQA."""
        q = self._split(self.q(x), self.heads)
        k, v = self._split(self.k(x), self.kv_heads), self._split(self.v(x), self.kv_heads)
        if self.rotary is not None:
            q, k = self.rotary(q), self.rotary(k)
        if self.kv_heads != self.heads:
            group = self.heads // self.kv_heads
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        return q, k, v

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: ``(B, T, d)``; ``attention_mask``: optional ``(B, T)``, 1 = real token. Returns ``(B, T, d)``."""
        B, T, d = x.shape
        mask = allowed_keys(T, causal=self.causal, attention_mask=attention_mask, device=x.device,
                            window=self.window)
        q, k, v = self._qkv(x)
        drop_active = self.training and self.attn_dropout.p > 0
        if (
            self.fast
            and not drop_active
            and not _has_hooks(self.probs)
            and (mask is None or bool(mask.any(-1).all()))
        ):
            if mask is None or (attention_mask is None and self.causal and self.window is None):
                out = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
            else:
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            logits = (q @ k.transpose(-2, -1)) / math.sqrt(self.d_head)
            A = self.attn_dropout(self.probs(logits, mask))
            out = A @ v
        if self.centred:
            out = out - self._masked_mean(v, mask)
        out = out.transpose(1, 2).reshape(B, T, d)
        if self.o is not None:
            out = self.o(out)
        return self.out_dropout(out)

    @staticmethod
    def _masked_mean(v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``(1/n_t) Σ_{s allowed for t} v_s`` for each row t (0 for a row with no allowed key)."""
        if mask is None:
            return v.mean(dim=-2, keepdim=True)
        m = mask.to(v.dtype)
        n = m.sum(dim=-1, keepdim=True).clamp_min(1.0)
        return (m / n) @ v


class GainControlledAttention(SelfAttention):
    """Gain-controlled (centred) self-attention, docs/theory.md §6: ``GC(X)_t = Σ_s (A_ts − 1/n_t) v_s``.

    ``= (A V)_t − (mean of v_s over the n_t keys row t may see)``: the uniform part of the attention,
    which carries the common (rank-collapsing) component of the tokens, is removed. For an encoder
    without padding ``n_t = T``; with a causal mask ``n_t = t`` (``min(t, W)`` with a window); padded keys
    never count. No extra parameters. Drop-in usable in any PyTorch model:
    ``forward(x (B,T,d), attention_mask=None)``. Takes the keyword options of :class:`SelfAttention`.
    """

    def __init__(self, d: int, heads: int = 1, **kwargs: Any) -> None:
        kwargs.pop("centred", None)
        super().__init__(d, heads, centred=True, **kwargs)


# ------------------------------------------------------------------------------------------------ MLPs
@torch.no_grad()
def init_mlp_linears(spec: Spec, inputs: tuple[nn.Linear, ...], output: nn.Linear, generator: torch.Generator) -> None:
    """The MLP initialisation of ``spec``: every input projection ``W ~ N(0, σ_w²/d)``, the output
    ``W_2 ~ N(0, σ_w,out²/hidden)``, all biases ``~ N(0, σ_b²)`` (drawn in this order, inputs first)."""
    sb = math.sqrt(float(spec.sigma_b2))
    for lin in inputs:
        normal_(lin.weight, math.sqrt(float(spec.sigma_w2) / lin.in_features), generator)
        normal_(lin.bias, sb, generator)
    normal_(output.weight, math.sqrt(float(spec.w2_out) / output.in_features), generator)
    normal_(output.bias, sb, generator)


class _MLPBase(nn.Module):
    """What the plain and the gated MLP share: the output projection ``fc2``, the nonlinearity, dropout and
    the initialisation (:func:`init_mlp_linears`); a subclass creates its input projections first (so
    parameters keep their order) and names them in :meth:`inputs`."""

    fc2: nn.Linear

    def _output(self, d: int, hidden: int, activation: str | Callable[[Any], Any], dropout: float) -> None:
        self.fc2 = nn.Linear(hidden, d)
        self.act = activation_fn(activation)
        self.dropout = nn.Dropout(dropout)

    def inputs(self) -> tuple[nn.Linear, ...]:
        raise NotImplementedError

    @torch.no_grad()
    def init_from_spec(self, spec: Spec, generator: torch.Generator) -> None:
        """Input projections ``W ~ N(0, σ_w²/d)``, ``W_2 ~ N(0, σ_w,out²/hidden)``, biases ``~ N(0, σ_b²)``."""
        init_mlp_linears(spec, self.inputs(), self.fc2, generator)


class MLP(_MLPBase):
    """``W_2 φ(W_1 x + b_1) + b_2`` with hidden width ``round(mlp_ratio · d)`` (attributes ``fc1``, ``fc2``)."""

    def __init__(
        self, d: int, hidden: int, activation: str | Callable[[Any], Any] = "relu", dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d, hidden)
        self._output(d, hidden, activation, dropout)

    def inputs(self) -> tuple[nn.Linear, ...]:
        return (self.fc1,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(self.act(self.fc1(x))))


class GatedMLP(_MLPBase):
    """Gated MLP ``W_2 (φ(W_g x + b_g) ⊙ (W_u x + b_u)) + b_2`` (attributes ``gate``, ``up``, ``fc2``).

    ``activation`` is ``"swiglu"`` (φ = SiLU; Llama, Mistral, Qwen2) or ``"geglu"`` (φ = exact GELU;
    ModernBERT, T5 v1.1 uses the tanh GELU), or a callable φ. Gate and up projections are independent
    draws, so in the mean-field limit the MLP's kernel is the product of a φ-kernel and a linear one.
    """

    def __init__(
        self, d: int, hidden: int, activation: str | Callable[[Any], Any] = "swiglu", dropout: float = 0.0
    ) -> None:
        super().__init__()
        if isinstance(activation, str):
            if activation.lower() not in GATED:
                raise ValueError(f"GatedMLP activation must be one of {tuple(GATED)} or a callable; got {activation!r}")
            activation = GATED[activation.lower()]
        self.gate = nn.Linear(d, hidden)
        self.up = nn.Linear(d, hidden)
        self._output(d, hidden, activation, dropout)

    def inputs(self) -> tuple[nn.Linear, ...]:
        return (self.gate, self.up)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(self.act(self.gate(x)) * self.up(x)))


def make_mlp(d: int, hidden: int, activation: str | Callable[[Any], Any], dropout: float = 0.0) -> nn.Module:
    """:class:`GatedMLP` for ``swiglu``/``geglu``, else :class:`MLP`."""
    if isinstance(activation, str) and activation.lower() in GATED:
        return GatedMLP(d, hidden, activation, dropout)
    return MLP(d, hidden, activation, dropout)


# ---------------------------------------------------------------------------------------------- blocks
class Block(nn.Module):
    """One transformer block of a scalar :class:`Spec`, following :func:`sigprop.spec.recipe` (module doc).

    Submodules: ``attn`` (:class:`SelfAttention`), ``mlp`` (:class:`MLP` or :class:`GatedMLP`), and the norms
    ``ln1``, ``ln2`` (sequential: the norm of the attention sublayer, then of the MLP sublayer; parallel
    pre-LN: the attention branch's and the MLP branch's input norms; parallel post-LN: ``ln1`` only).
    ``hidden`` defaults to ``round(spec.mlp_ratio · d)``. The block is initialised by
    :func:`sigprop.nn.init_weights` (a :class:`TransformerStack` does it for you).
    """

    def __init__(
        self,
        spec: Spec,
        *,
        hidden: int | None = None,
        out_proj: bool = False,
        layer_norm_affine: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not isinstance(spec, Spec) or spec.is_grid:
            raise ValueError("Block needs a scalar sigprop.Spec")
        d = spec.width
        hidden = max(1, round(spec.mlp_ratio * d)) if hidden is None else int(hidden)
        self.norm, self.block = spec.norm, spec.block
        self.alpha_sa, self.alpha_mlp = float(spec.alpha_sa), float(spec.alpha_mlp)
        self.attn = SelfAttention(
            d, spec.heads, centred=spec.attention == "centred", causal=spec.causal, out_proj=out_proj,
            dropout=dropout, kv_heads=spec.kv_heads, rope_fraction=spec.rope_fraction,
            rope_theta=spec.rope_theta, window=spec.window,
        )
        self.mlp = make_mlp(d, hidden, spec.activation, dropout)
        #: per sublayer: (α attribute, ((branch, input-norm name or None), ...), output-norm name or None)
        self.plan: list[tuple[str, tuple[tuple[str, str | None], ...], str | None]] = []
        names = (f"ln{i}" for i in range(1, 100))
        for sub in recipe(spec):
            branches = tuple((b, next(names) if sub.norm_in else None) for b in sub.branches)
            self.plan.append((sub.alpha, branches, next(names) if sub.norm_out else None))
        for _, branches, out in self.plan:
            for name in [n for _, n in branches] + [out]:
                if name is not None:
                    self.add_module(name, make_norm(d, spec.norm_type, layer_norm_affine))

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        for alpha, branches, norm_out in self.plan:
            out = getattr(self, alpha) * x
            for branch, norm_in in branches:
                h = x if norm_in is None else getattr(self, norm_in)(x)
                out = out + (self.attn(h, attention_mask) if branch == "attn" else self.mlp(h))
            x = out if norm_out is None else getattr(self, norm_out)(out)
        return x


class TransformerStack(nn.Module):
    """The torch twin of a scalar :class:`Spec`: ``spec.depth`` blocks, initialised as in docs/theory.md §1.

    ``model(inputs_embeds=x)`` feeds raw vectors ``x`` (``(B, T, d)``) to block 1 as given (no embedding
    norm), so their overlaps are the theory's ``(q0, ρ0)``. ``model(input_ids=ids, attention_mask=mask)``
    uses token + learned position embeddings → embedding norm → blocks (needs ``vocab_size``); with RoPE
    (``spec.rope_fraction > 0``) positions enter through the rotation only, as in Llama or GPT-NeoX, and
    there is no learned position table. Returns the final hidden states ``(B, T, d)`` (no final norm).

    Parameters
    ----------
    spec : scalar Spec (width d, heads, kv_heads, depth L, norm, norm_type, block, attention, causal, window,
        activation, RoPE, β, α_SA, α_MLP, σ_w², σ_w,out², σ_v², σ_b², σ_bV², T = ``seq_len`` for the
        ``(ln T)^{1/4}`` of the Q/K init).
    vocab_size, max_position : token-embedding size; position-embedding size (default ``spec.seq_len``;
        the longest sequence ``embed`` accepts without RoPE).
    emb_std, pos_std : std of the token and position embeddings.
    out_proj : add ``W_O`` (variance 1/d) after attention. layer_norm_affine : norms with γ (and β).
    dropout : on attention probabilities and branch outputs (inactive in ``eval()``; default 0).
    seed : init seed (a local ``torch.Generator``; the global RNG is untouched). ``None`` draws the seed
        from the global torch RNG, so ``torch.manual_seed`` still makes it reproducible. Stored as ``.seed``.
    dtype : parameter dtype.
    """

    def __init__(
        self,
        spec: Spec,
        *,
        vocab_size: int | None = None,
        max_position: int | None = None,
        emb_std: float = 0.1,
        pos_std: float = 0.1,
        out_proj: bool = False,
        layer_norm_affine: bool = False,
        dropout: float = 0.0,
        seed: int | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if not isinstance(spec, Spec):
            raise TypeError(f"spec must be a sigprop.Spec; got {type(spec).__name__}")
        if spec.is_grid:
            raise ValueError(
                f"TransformerStack needs a scalar Spec, got a grid of shape {spec.shape}; use spec.point(i)"
            )
        self.spec = spec
        d = spec.width
        self.width, self.heads, self.hidden = d, spec.heads, max(1, round(spec.mlp_ratio * d))
        self.emb_std, self.pos_std = float(emb_std), float(pos_std)
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())
        self.seed = int(seed)
        # PyTorch's default Linear/Embedding init draws from the global RNG; it is overwritten by
        # init_weights anyway, so restore the global state afterwards (the seed alone fixes the model)
        with torch.random.fork_rng(devices=[]):
            self._build(spec, vocab_size, max_position, out_proj, layer_norm_affine, dropout)
        init_weights(self, spec, torch.Generator().manual_seed(self.seed))
        self.to(dtype)

    def _build(self, spec, vocab_size, max_position, out_proj, layer_norm_affine, dropout) -> None:
        d = spec.width
        self.blocks = nn.ModuleList(
            Block(spec, hidden=self.hidden, out_proj=out_proj, layer_norm_affine=layer_norm_affine, dropout=dropout)
            for _ in range(spec.depth)
        )
        self.max_position: int | None = None
        if vocab_size is not None:
            self.max_position = int(max_position if max_position is not None else spec.seq_len)
            self.token_embedding: nn.Embedding | None = nn.Embedding(int(vocab_size), d)
            # RoPE models carry position in the rotation of q and k: no learned table on top
            self.position_embedding: nn.Embedding | None = (
                None if spec.rope_fraction > 0 else nn.Embedding(self.max_position, d))
            self.embed_norm: nn.Module | None = make_norm(d, spec.norm_type, layer_norm_affine)
            self.embed_dropout = nn.Dropout(dropout)
        else:
            self.token_embedding = self.position_embedding = self.embed_norm = None

    @torch.no_grad()
    def init_embeddings(self, generator: torch.Generator, emb_std: float | None = None,
                        pos_std: float | None = None) -> None:
        """Token embeddings ``N(0, emb_std²)``, position embeddings ``N(0, pos_std²)`` (defaults: the attributes)."""
        if self.token_embedding is None:
            return
        normal_(self.token_embedding.weight, self.emb_std if emb_std is None else emb_std, generator)
        if self.position_embedding is not None:
            normal_(self.position_embedding.weight, self.pos_std if pos_std is None else pos_std, generator)

    @property
    def vocab_size(self) -> int | None:
        return None if self.token_embedding is None else self.token_embedding.num_embeddings

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Token + position (0..T−1) embeddings → embedding norm; ``(B, T)`` → ``(B, T, d)``. With RoPE: token
        embeddings only (any T)."""
        if self.token_embedding is None or self.embed_norm is None or self.max_position is None:
            raise ValueError(
                "this TransformerStack has no embeddings; build it with vocab_size=... or pass inputs_embeds"
            )
        x = self.token_embedding(input_ids)
        if self.position_embedding is not None:
            T = input_ids.shape[-1]
            if T > self.max_position:
                raise ValueError(f"sequence length {T} exceeds max_position {self.max_position}")
            x = x + self.position_embedding(torch.arange(T, device=input_ids.device))
        return self.embed_dropout(self.embed_norm(x))

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if input_ids is not None and inputs_embeds is None:
            x = self.embed(input_ids)
        elif inputs_embeds is not None and input_ids is None:
            x = inputs_embeds
        else:
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        if x.ndim != 3 or x.shape[-1] != self.width:
            raise ValueError(f"inputs must have shape (B, T, {self.width}); got {tuple(x.shape)}")
        for block in self.blocks:
            x = block(x, attention_mask)
        return x
