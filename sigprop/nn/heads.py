"""Language-model heads on the torch twin, and the uniform-attention control.

* :class:`MLMHead` — BERT's masked-LM head (the authors trained HF BERT): ``dense → GELU → LayerNorm →
  decoder`` with the decoder weight tied to the token embedding and its own bias.
* :class:`NextTokenHead` — the decoder twin's head: an optional final LayerNorm (used for pre-LN stacks,
  whose last block output is not normalised; GPT-2's ``ln_f``) then the tied decoder.
* :class:`LanguageModel` — a :class:`~sigprop.nn.TransformerStack` plus the head its ``spec`` calls for
  (``spec.causal`` → next-token, else masked-LM). ``forward(input_ids, attention_mask=None, labels=None)``
  returns ``{"logits", "loss"}`` in HuggingFace's conventions (``IGNORE_INDEX = -100`` labels; causal
  labels unshifted, shifted inside), so it also works with ``transformers.Trainer``.
* :func:`freeze_uniform_attention` — replaces every ``block.attn.probs`` by :class:`UniformProbs` so the
  attention is fixed to uniform over the keys each row may see (``W_Q``, ``W_K`` then receive no gradient).
  Comparing a run with and without it shows whether the model learns anything *through* attention.

Head parameters are drawn from a local generator (``N(0, 0.02²)`` dense weights as in HF BERT, zero
biases), so the model seed fixes them and the global RNG is untouched.
"""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from sigprop.nn.init import normal_, reset_norm_
from sigprop.nn.modules import LN_EPS, AttentionProbs, Block, TransformerStack, make_norm

__all__ = [
    "IGNORE_INDEX",
    "MLMHead",
    "NextTokenHead",
    "LanguageModel",
    "UniformProbs",
    "freeze_uniform_attention",
    "HEAD_INIT_STD",
]

IGNORE_INDEX = -100
#: std of the dense head weights (HF ``initializer_range``)
HEAD_INIT_STD = 0.02


class MLMHead(nn.Module):
    """``decoder(LN(gelu(dense(h))))`` with ``decoder.weight`` tied to ``embedding.weight`` (BERT)."""

    def __init__(self, d: int, embedding: nn.Embedding) -> None:
        super().__init__()
        self.dense = nn.Linear(d, d)
        self.norm = nn.LayerNorm(d, eps=LN_EPS)
        self.embedding = embedding  # shared, not a copy
        self.bias = nn.Parameter(torch.zeros(embedding.num_embeddings))

    def reset_parameters(self, generator: torch.Generator) -> None:
        normal_(self.dense.weight, HEAD_INIT_STD, generator)
        with torch.no_grad():
            self.dense.bias.zero_()
            self.norm.weight.fill_(1.0)
            self.norm.bias.zero_()
            self.bias.zero_()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = self.norm(F.gelu(self.dense(h)))
        return F.linear(h, self.embedding.weight, self.bias)


class NextTokenHead(nn.Module):
    """``decoder(N_f(h))`` (``N_f`` only if ``final_norm``: an affine LayerNorm, or RMSNorm if ``norm_type`` says
    so, as Llama's final norm), decoder tied to the token embedding."""

    def __init__(self, d: int, embedding: nn.Embedding, *, final_norm: bool = True, norm_type: str = "layernorm") -> None:
        super().__init__()
        self.norm = make_norm(d, norm_type, affine=True) if final_norm else None
        self.embedding = embedding
        self.bias = nn.Parameter(torch.zeros(embedding.num_embeddings))

    def reset_parameters(self, generator: torch.Generator) -> None:
        with torch.no_grad():
            if self.norm is not None:
                reset_norm_(self.norm)
            self.bias.zero_()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.norm is not None:
            h = self.norm(h)
        return F.linear(h, self.embedding.weight, self.bias)


class LanguageModel(nn.Module):
    """Stack + LM head. ``objective`` is ``"mlm"`` or ``"clm"`` (default: ``"clm"`` iff ``spec.causal``).

    Build with :meth:`from_spec`, or wrap an existing :class:`TransformerStack` that has embeddings.
    """

    def __init__(self, stack: TransformerStack, objective: str | None = None, *, head_seed: int | None = None) -> None:
        super().__init__()
        if stack.token_embedding is None:
            raise ValueError("LanguageModel needs a TransformerStack built with vocab_size=...")
        causal = bool(stack.spec.causal)
        objective = objective or ("clm" if causal else "mlm")
        if objective not in ("mlm", "clm"):
            raise ValueError(f"objective must be 'mlm' or 'clm'; got {objective!r}")
        if objective == "clm" and not causal:
            raise ValueError("next-token prediction needs a causal stack (spec.causal=True)")
        self.objective = objective
        self.stack = stack
        d = stack.width
        if objective == "mlm":
            self.head: nn.Module = MLMHead(d, stack.token_embedding)
        else:
            self.head = NextTokenHead(d, stack.token_embedding, final_norm=stack.spec.norm == "pre",
                                      norm_type=stack.spec.norm_type)
        seed = stack.seed + 1 if head_seed is None else int(head_seed)
        self.head.reset_parameters(torch.Generator().manual_seed(seed))

    @classmethod
    def from_spec(cls, spec, *, vocab_size: int, objective: str | None = None, **stack_kwargs: Any) -> LanguageModel:
        """``LanguageModel(TransformerStack(spec, vocab_size=..., **stack_kwargs), objective)``."""
        return cls(TransformerStack(spec, vocab_size=vocab_size, **stack_kwargs), objective)

    @property
    def spec(self):
        return self.stack.spec

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **_: Any,
    ) -> dict[str, torch.Tensor]:
        h = self.stack(input_ids=input_ids, attention_mask=attention_mask)
        logits = self.head(h)
        out: dict[str, torch.Tensor] = {"logits": logits}
        if labels is not None:
            out["loss"] = lm_loss(logits, labels, self.objective)
        return out


def lm_loss(logits: torch.Tensor, labels: torch.Tensor, objective: str, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy in nats over labelled positions (causal: ``logits[:, :-1]`` against ``labels[:, 1:]``)."""
    if objective == "clm":
        logits, labels = logits[:, :-1], labels[:, 1:]
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction=reduction
    )


class UniformProbs(AttentionProbs):
    """Attention fixed to uniform over the allowed keys: ``A_ts = 1/n_t`` (the logits are ignored)."""

    def forward(self, logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(torch.zeros_like(logits).detach(), mask)


def freeze_uniform_attention(model: nn.Module) -> int:
    """Replace every ``.attn.probs`` (an :class:`AttentionProbs`) inside ``model`` by :class:`UniformProbs`.

    Returns how many were replaced. Hooks on ``attn.probs`` (the probes) still see the (uniform) ``A``.
    ``W_Q`` and ``W_K`` stay in the model but get no gradient; the trainer keeps them out of the optimiser.
    """
    n = 0
    for module in list(model.modules()):
        probs = getattr(module, "probs", None)
        if isinstance(probs, AttentionProbs) and not isinstance(probs, UniformProbs):
            module.probs = UniformProbs()
            n += 1
    if n == 0:
        raise ValueError("freeze_uniform_attention found no sigprop attention (no .attn.probs) in the model")
    return n


def _register_measure_adapter() -> None:
    from sigprop.measure import HookPoints, register_adapter

    def adapter(m: nn.Module) -> HookPoints:
        assert isinstance(m, LanguageModel)  # registered with the isinstance predicate below
        blocks = cast("list[Block]", list(m.stack.blocks))  # a stack's ModuleList holds only Blocks
        return HookPoints(
            blocks=list(blocks),
            attention_probs=[b.attn.probs for b in blocks],
            causal=bool(m.stack.spec.causal),
        )

    register_adapter(lambda m: isinstance(m, LanguageModel), adapter)


_register_measure_adapter()
