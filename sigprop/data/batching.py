"""Packing tokenised documents into fixed-length rows, MLM / CLM collation, and the unigram baseline."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["IGNORE_INDEX", "pack", "mlm_collate", "clm_targets", "unigram_loss", "to_batch_tensor"]

#: Label value for positions that are not predicted (PyTorch / HuggingFace convention).
IGNORE_INDEX = -100


def pack(documents: Sequence[str], tokenizer: PreTrainedTokenizerBase, seq_len: int) -> torch.Tensor:
    """Tokenise ``documents`` and pack them into a ``(N, seq_len)`` LongTensor.

    Each document is tokenised without special tokens and followed by one ``[SEP]`` (so ``[SEP]`` ends
    every document, separating it from the next); the concatenation, in document order, is cut into
    consecutive rows of ``seq_len`` tokens and the ragged tail (fewer than ``seq_len`` tokens) is
    dropped. Rows therefore may start or end mid-document. Deterministic.
    """
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    sep = tokenizer.sep_token_id
    if sep is None:
        raise ValueError("the tokenizer has no [SEP] token")
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # fast path: batch-encode in Rust
        encoded = [e.ids for e in backend.encode_batch(list(documents), add_special_tokens=False)]
    else:
        encoded = tokenizer(list(documents), add_special_tokens=False)["input_ids"]
    flat: list[int] = []
    for ids in encoded:
        flat.extend(ids)
        flat.append(sep)
    n = len(flat) // seq_len
    return torch.tensor(flat[: n * seq_len], dtype=torch.long).view(n, seq_len)


def to_batch_tensor(batch: torch.Tensor | Sequence[Any]) -> torch.Tensor:
    """A ``(B, T)`` LongTensor from a tensor, a list of 1-D tensors / int lists, or a list of dicts
    with ``"input_ids"`` (the form HuggingFace datasets yield)."""
    if isinstance(batch, torch.Tensor):
        out = batch
    else:
        rows = [b["input_ids"] if isinstance(b, dict) else b for b in batch]
        out = torch.stack([torch.as_tensor(r) for r in rows])
    if out.dim() != 2:
        raise ValueError(f"expected a (batch, seq_len) batch, got shape {tuple(out.shape)}")
    return out.long()


def mlm_collate(
    batch: torch.Tensor | Sequence[Any],
    tokenizer: PreTrainedTokenizerBase,
    mlm_probability: float = 0.15,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """BERT masked-LM corruption of a batch.

    Every non-special position is selected independently with probability ``mlm_probability``; special
    tokens (``tokenizer.all_special_ids``: pad, unk, cls, sep, mask) are never selected. A selected
    position is replaced by ``[MASK]`` with probability 0.8, by a uniformly random *non-special* token
    with probability 0.1, and left unchanged with probability 0.1. ``labels`` holds the original id at
    selected positions and :data:`IGNORE_INDEX` elsewhere. All randomness comes from ``generator``
    (three draws in a fixed order), so the same generator state gives the same result; with
    ``generator=None`` torch's global RNG is used. The input is not modified.

    Returns:
        ``{"input_ids", "labels", "attention_mask"}``, each ``(B, T)``; the attention mask is 0 on
        ``[PAD]``.
    """
    if not 0.0 <= mlm_probability <= 1.0:
        raise ValueError(f"mlm_probability must be in [0, 1], got {mlm_probability}")
    ids = to_batch_tensor(batch)
    special_ids = sorted(set(tokenizer.all_special_ids))
    special = torch.isin(ids, torch.tensor(special_ids, dtype=torch.long))
    selected = (torch.rand(ids.shape, generator=generator) < mlm_probability) & ~special
    labels = torch.where(selected, ids, torch.full_like(ids, IGNORE_INDEX))

    action = torch.rand(ids.shape, generator=generator)
    to_mask = selected & (action < 0.8)
    to_random = selected & (action >= 0.8) & (action < 0.9)
    vocab = len(tokenizer)
    normal = torch.tensor([i for i in range(vocab) if i not in set(special_ids)], dtype=torch.long)
    random_ids = normal[torch.randint(len(normal), ids.shape, generator=generator)]

    inputs = ids.clone()
    inputs[to_mask] = tokenizer.mask_token_id
    inputs[to_random] = random_ids[to_random]
    pad = tokenizer.pad_token_id
    attention = (ids != pad).long() if pad is not None else torch.ones_like(ids)
    return {"input_ids": inputs, "labels": labels, "attention_mask": attention}


def clm_targets(
    batch: torch.Tensor | Sequence[Any], pad_token_id: int | None = None
) -> dict[str, torch.Tensor]:
    """Causal-LM inputs and labels, HuggingFace convention: ``labels`` equal ``input_ids`` (unshifted;
    the model shifts them internally, predicting ``labels[:, t+1]`` from positions ``<= t``), with
    ``pad_token_id`` positions (if given) set to :data:`IGNORE_INDEX`. A model that does not shift must
    use ``labels[:, 1:]`` against its logits ``[:, :-1]``.
    """
    ids = to_batch_tensor(batch)
    labels = ids.clone()
    attention = torch.ones_like(ids)
    if pad_token_id is not None:
        is_pad = ids == pad_token_id
        labels[is_pad] = IGNORE_INDEX
        attention[is_pad] = 0
    return {"input_ids": ids, "labels": labels, "attention_mask": attention}


def unigram_loss(
    train_ids: torch.Tensor | Sequence[int],
    test_ids: torch.Tensor | Sequence[int],
    vocab_size: int,
    *,
    exclude_ids: Iterable[int] = (),
) -> float:
    """Cross-entropy (nats per token) of the test tokens under the training unigram distribution.

    The distribution is Laplace (add-one) smoothed: ``p(v) = (count_train(v) + 1) / (N_train + V')``
    over the ``V'`` token ids in ``range(vocab_size)`` not in ``exclude_ids``, so unseen tokens get a
    finite loss. Excluded ids are dropped from both the training counts and the test tokens; pass the
    special ids for the MLM plateau (MLM never predicts specials, so its best context-free prediction is
    the unigram over ordinary tokens), nothing for a causal LM that predicts every next token.

    This is the "unigram plateau" a training run must get below to show it uses the context.
    """
    train = torch.as_tensor(train_ids, dtype=torch.long).flatten()
    test = torch.as_tensor(test_ids, dtype=torch.long).flatten()
    for name, t in (("train", train), ("test", test)):
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= vocab_size):
            raise ValueError(f"{name}_ids contain ids outside [0, {vocab_size})")
    keep = torch.ones(vocab_size, dtype=torch.bool)
    excluded = sorted(set(exclude_ids))
    if excluded:
        keep[torch.tensor(excluded, dtype=torch.long)] = False
    train = train[keep[train]]
    test = test[keep[test]]
    if test.numel() == 0:
        raise ValueError("no test tokens left to score")
    counts = torch.bincount(train, minlength=vocab_size).double() + 1.0
    counts[~keep] = 0.0
    log_p = counts.log() - math.log(float(counts.sum()))
    return float(-log_p[test].mean())
