"""PyTorch twin of a :class:`sigprop.Spec`: the transformer stack the theory describes, at initialisation.

Block structure (docs/theory.md §3), with α on the **skip** path and no final LayerNorm after the stack, so that
the hidden state after block ℓ is exactly the theory's state after ℓ block updates:

* post-LN: ``x ← LN(α_SA x + SA(x))``, then ``x ← LN(α_MLP x + MLP(x))``;
* pre-LN:  ``x ← α_SA x + SA(LN x)``,  then ``x ← α_MLP x + MLP(LN x)``.

Self-attention per head h (``d_h = d / heads``): logits ``a_ts = (x_t W_Q)·(x_s W_K) / sqrt(d_h)``
(no Q/K bias), ``A = softmax_s(a)``, values ``V = x W_V + b_V``, output ``concat_h(A V)`` (times an
optional ``W_O``). Gain-controlled ("centred") attention (docs/theory.md §6) outputs ``Σ_s (A_ts − 1/n_t) v_s``,
where ``n_t`` is the number of keys row t may see (causal and padding masks respected).

LayerNorm: ``nn.LayerNorm(d, eps=LN_EPS, elementwise_affine=False)`` by default. ``LN_EPS = 1e-6`` (not
PyTorch's 1e-5): it is negligible against the unit per-dimension variance of every state the theory
tracks, and smaller than the 1e-5 of BERT so that the measured ``q`` after LN is 1 to ~1e-6.

The softmax probabilities come out of a tiny :class:`AttentionProbs` submodule so that a forward hook on
``block.attn.probs`` sees the attention matrix ``A`` (shape ``(B, heads, T, T)``) without changing the
output: the explicit path ``softmax(QKᵀ/sqrt(d_h)) V`` always runs by default, so outputs with and without
probes are bit-identical. Setting ``attn.fast = True`` uses PyTorch's fused ``scaled_dot_product_attention``
whenever nothing hooks ``attn.probs`` and no dropout is active; it agrees to float rounding (~1e-6, tested)
but gains only a few % on CPU (``benchmarks/bench_torch.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sigprop.spec import Spec

__all__ = [
    "LN_EPS",
    "ACTIVATIONS",
    "activation_fn",
    "AttentionProbs",
    "SelfAttention",
    "GainControlledAttention",
    "MLP",
    "Block",
    "TransformerStack",
    "allowed_keys",
]

#: LayerNorm epsilon used throughout the torch twin (see module docstring).
LN_EPS = 1e-6


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


#: activation names of :class:`Spec` mapped to torch functions. ``gelu`` is the exact (erf) GELU
#: ``x Φ(x)``; ``erf`` is the plain error function ``erf(x)``.
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
            raise ValueError(
                f"activation {activation!r} has no torch twin; known: {sorted(ACTIVATIONS)}"
            ) from None
    if callable(activation):
        return activation
    raise ValueError(f"activation must be a name or a callable; got {activation!r}")


def allowed_keys(
    T: int, *, causal: bool, attention_mask: torch.Tensor | None, device: torch.device | None = None
) -> torch.Tensor | None:
    """Boolean ``(B or 1, 1, T, T)`` mask, True where query row t may attend to key s; ``None`` if all may.

    ``attention_mask`` is ``(B, T)`` with 1 (or True) for real tokens and 0 for padding; padded keys are
    excluded. Padded *query* rows still attend to the real keys (their outputs are ignored by the probes).
    """
    mask = None
    if causal:
        mask = torch.ones(T, T, dtype=torch.bool, device=device).tril_()[None, None]
    if attention_mask is not None:
        if attention_mask.ndim != 2 or attention_mask.shape[-1] != T:
            raise ValueError(f"attention_mask must have shape (B, {T}); got {tuple(attention_mask.shape)}")
        keys = attention_mask.to(device=device).bool()[:, None, None, :]
        mask = keys if mask is None else (mask & keys)
    return mask


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
    heads : number of heads (divides d); ``d_h = d / heads`` and logits are scaled by ``1/sqrt(d_h)``.
    centred : gain-controlled attention, output ``Σ_s (A_ts − 1/n_t) v_s`` (docs/theory.md §6).
    causal : decoder mask (row t sees keys s ≤ t).
    out_proj : add an output projection ``W_O`` (no bias; init variance 1/d leaves σ_v² unchanged).
    dropout : dropout on ``A`` (after :attr:`probs`, so hooks see the clean ``A``) and on the output.
    fast : use the fused ``scaled_dot_product_attention`` when no hook is on :attr:`probs` (default off,
        so that probes never change outputs even by rounding).

    Attributes ``q``, ``k`` (``nn.Linear`` without bias: ``W_Q``, ``W_K``), ``v`` (``W_V``, ``b_V``),
    ``o`` (``W_O`` or ``None``), ``probs`` (:class:`AttentionProbs`). Initialise with
    :func:`sigprop.nn.init_weights` (β, σ_v², σ_bV²) — PyTorch's default Linear init is **not** the
    theory's.
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
    ) -> None:
        super().__init__()
        if d < 1 or heads < 1 or d % heads:
            raise ValueError(f"heads must divide d; got d={d}, heads={heads}")
        self.d, self.heads, self.d_head = d, heads, d // heads
        self.centred, self.causal = bool(centred), bool(causal)
        #: use ``F.scaled_dot_product_attention`` when nothing hooks ``probs`` and dropout is inactive
        self.fast = fast
        self.q = nn.Linear(d, d, bias=False)
        self.k = nn.Linear(d, d, bias=False)
        self.v = nn.Linear(d, d, bias=True)
        self.o = nn.Linear(d, d, bias=False) if out_proj else None
        self.probs = AttentionProbs()
        self.attn_dropout = nn.Dropout(dropout)
        self.out_dropout = nn.Dropout(dropout)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.heads, self.d_head).transpose(1, 2)  # (B, H, T, d_h)

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: ``(B, T, d)``; ``attention_mask``: optional ``(B, T)``, 1 = real token. Returns ``(B, T, d)``."""
        B, T, d = x.shape
        mask = allowed_keys(T, causal=self.causal, attention_mask=attention_mask, device=x.device)
        q, k, v = self._split(self.q(x)), self._split(self.k(x)), self._split(self.v(x))
        drop_active = self.training and self.attn_dropout.p > 0
        if (
            self.fast
            and not drop_active
            and not _has_hooks(self.probs)
            and (mask is None or bool(mask.any(-1).all()))
        ):
            if mask is None or (attention_mask is None and self.causal):
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
    without padding ``n_t = T``; with a causal mask ``n_t = t``; padded keys never count. No extra
    parameters. Drop-in usable in any PyTorch model: ``forward(x (B,T,d), attention_mask=None)``.
    """

    def __init__(
        self,
        d: int,
        heads: int = 1,
        *,
        causal: bool = False,
        out_proj: bool = False,
        dropout: float = 0.0,
        fast: bool = False,
    ) -> None:
        super().__init__(d, heads, centred=True, causal=causal, out_proj=out_proj, dropout=dropout, fast=fast)


class MLP(nn.Module):
    """``W_2 φ(W_1 x + b_1) + b_2`` with hidden width ``round(mlp_ratio · d)`` (attributes ``fc1``, ``fc2``)."""

    def __init__(
        self, d: int, hidden: int, activation: str | Callable[[Any], Any] = "relu", dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d, hidden)
        self.fc2 = nn.Linear(hidden, d)
        self.act = activation_fn(activation)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(self.act(self.fc1(x))))


class Block(nn.Module):
    """One transformer block: ``attn`` then ``mlp``, each with skip strength α and a LayerNorm (post or pre)."""

    def __init__(
        self,
        d: int,
        heads: int,
        hidden: int,
        *,
        norm: str = "post",
        attention: str = "softmax",
        causal: bool = False,
        activation: str | Callable[[Any], Any] = "relu",
        alpha_sa: float = 1.0,
        alpha_mlp: float = 1.0,
        out_proj: bool = False,
        layer_norm_affine: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if norm not in ("post", "pre"):
            raise ValueError(f"norm must be 'post' or 'pre'; got {norm!r}")
        if attention not in ("softmax", "centred"):
            raise ValueError(f"attention must be 'softmax' or 'centred'; got {attention!r}")
        self.norm = norm
        self.alpha_sa, self.alpha_mlp = float(alpha_sa), float(alpha_mlp)
        self.attn = SelfAttention(
            d, heads, centred=attention == "centred", causal=causal, out_proj=out_proj, dropout=dropout
        )
        self.mlp = MLP(d, hidden, activation, dropout)
        self.ln1 = nn.LayerNorm(d, eps=LN_EPS, elementwise_affine=layer_norm_affine)
        self.ln2 = nn.LayerNorm(d, eps=LN_EPS, elementwise_affine=layer_norm_affine)

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.norm == "post":
            x = self.ln1(self.alpha_sa * x + self.attn(x, attention_mask))
            return self.ln2(self.alpha_mlp * x + self.mlp(x))
        x = self.alpha_sa * x + self.attn(self.ln1(x), attention_mask)
        return self.alpha_mlp * x + self.mlp(self.ln2(x))


class TransformerStack(nn.Module):
    """The torch twin of a scalar :class:`Spec`: ``spec.depth`` blocks, initialised as in docs/theory.md §1.

    ``model(inputs_embeds=x)`` feeds raw vectors ``x`` (``(B, T, d)``) to block 1 as given (no embedding
    LayerNorm), so their overlaps are the theory's ``(q0, ρ0)``. ``model(input_ids=ids,
    attention_mask=mask)`` uses token + learned position embeddings → embedding LayerNorm → blocks (needs
    ``vocab_size``). Returns the final hidden states ``(B, T, d)`` (no final LayerNorm).

    Parameters
    ----------
    spec : scalar Spec (width d, heads, depth L, norm, attention, causal, activation, β, α_SA, α_MLP,
        σ_w², σ_v², σ_b², σ_bV², T = ``seq_len`` for the ``(ln T)^{1/4}`` of the Q/K init).
    vocab_size, max_position : token-embedding size; position-embedding size (default ``spec.seq_len``).
    emb_std, pos_std : std of the token and position embeddings.
    out_proj : add ``W_O`` (variance 1/d) after attention. layer_norm_affine : LayerNorm with γ, β.
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
        from sigprop.nn.init import init_weights

        init_weights(self, spec, torch.Generator().manual_seed(self.seed))
        self.to(dtype)

    def _build(self, spec, vocab_size, max_position, out_proj, layer_norm_affine, dropout) -> None:
        d = spec.width
        self.blocks = nn.ModuleList(
            Block(
                d,
                spec.heads,
                self.hidden,
                norm=spec.norm,
                attention=spec.attention,
                causal=spec.causal,
                activation=spec.activation,
                alpha_sa=float(spec.alpha_sa),
                alpha_mlp=float(spec.alpha_mlp),
                out_proj=out_proj,
                layer_norm_affine=layer_norm_affine,
                dropout=dropout,
            )
            for _ in range(spec.depth)
        )
        if vocab_size is not None:
            self.max_position = int(max_position if max_position is not None else spec.seq_len)
            self.token_embedding: nn.Embedding | None = nn.Embedding(int(vocab_size), d)
            self.position_embedding: nn.Embedding | None = nn.Embedding(self.max_position, d)
            self.embed_norm: nn.LayerNorm | None = nn.LayerNorm(
                d, eps=LN_EPS, elementwise_affine=layer_norm_affine
            )
            self.embed_dropout = nn.Dropout(dropout)
        else:
            self.max_position = None
            self.token_embedding = self.position_embedding = self.embed_norm = None

    @property
    def vocab_size(self) -> int | None:
        return None if self.token_embedding is None else self.token_embedding.num_embeddings

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Token + position (0..T−1) embeddings → embedding LayerNorm; ``(B, T)`` → ``(B, T, d)``."""
        if self.token_embedding is None:
            raise ValueError(
                "this TransformerStack has no embeddings; build it with vocab_size=... or pass inputs_embeds"
            )
        T = input_ids.shape[-1]
        if T > self.max_position:
            raise ValueError(f"sequence length {T} exceeds max_position {self.max_position}")
        pos = torch.arange(T, device=input_ids.device)
        x = self.token_embedding(input_ids) + self.position_embedding(pos)
        return self.embed_dropout(self.embed_norm(x))

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        x = self.embed(input_ids) if input_ids is not None else inputs_embeds
        if x.ndim != 3 or x.shape[-1] != self.width:
            raise ValueError(f"inputs must have shape (B, T, {self.width}); got {tuple(x.shape)}")
        for block in self.blocks:
            x = block(x, attention_mask)
        return x
