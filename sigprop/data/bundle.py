"""One call from a corpus name to packed train/test tensors, a tokenizer and the unigram plateau."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from sigprop.data.batching import pack, unigram_loss
from sigprop.data.corpus import Corpus, load_corpus
from sigprop.data.tokenizer import get_tokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

__all__ = ["DataBundle", "prepare"]


@dataclass(frozen=True)
class DataBundle:
    """Everything a training run needs.

    Attributes:
        tokenizer: the corpus' WordPiece tokenizer (``len(tokenizer)`` is the model's vocabulary size).
        train: ``(N, seq_len)`` LongTensor of packed training tokens.
        test: ``(M, seq_len)`` LongTensor of packed test tokens.
        unigram_loss: MLM unigram plateau in nats: test cross-entropy of the add-one-smoothed training
            unigram over ordinary (non-special) tokens, the only ones MLM predicts.
        corpus_name: what the corpus was loaded from.
        fingerprint: the corpus fingerprint (also keys the tokenizer cache).
        unigram_loss_all: the same over all tokens, ``[SEP]`` included: the plateau for causal LM.
        requested_vocab_size: the vocabulary size asked for (the tokenizer may have fewer, see
            :attr:`vocab_note`).
    """

    tokenizer: PreTrainedTokenizerFast = field(repr=False)
    train: torch.Tensor = field(repr=False)
    test: torch.Tensor = field(repr=False)
    unigram_loss: float
    corpus_name: str
    fingerprint: str
    unigram_loss_all: float = float("nan")
    requested_vocab_size: int | None = None

    @property
    def vocab_size(self) -> int:
        """The actual vocabulary size (can be below the requested one for small corpora)."""
        return len(self.tokenizer)

    @property
    def vocab_note(self) -> str | None:
        """One line when the vocabulary came out smaller than requested (and why), else ``None``."""
        want = self.requested_vocab_size
        if want is None or self.vocab_size >= want:
            return None
        return (f"vocabulary of {self.vocab_size} tokens, not the {want} requested: the corpus {self.corpus_name!r} "
                "is too small (too few distinct words and word pieces) for more; a larger corpus gives more")

    @property
    def seq_len(self) -> int:
        return int(self.train.shape[1])

    def __repr__(self) -> str:
        return (
            f"DataBundle(corpus={self.corpus_name!r}, vocab={self.vocab_size}, train={tuple(self.train.shape)}, "
            f"test={tuple(self.test.shape)}, unigram_loss={self.unigram_loss:.3f}, "
            f"unigram_loss_all={self.unigram_loss_all:.3f})"
        )


def prepare(
    corpus: str | os.PathLike[str] | Corpus = "synthetic",
    seq_len: int = 64,
    vocab_size: int = 2000,
    *,
    seed: int = 0,
    test_fraction: float = 0.05,
    cache_dir: str | os.PathLike[str] | None = None,
    n_stories: int | None = None,
    max_documents: int | None = None,
) -> DataBundle:
    """Load ``corpus`` (see :func:`~sigprop.data.load_corpus`), get its tokenizer, pack both splits.

    Raises:
        CorpusUnavailable: the corpus cannot be loaded.
        ValueError: a split is too small to give one row of ``seq_len`` tokens.
    """
    if not isinstance(corpus, Corpus):
        corpus = load_corpus(
            corpus, seed=seed, test_fraction=test_fraction, n_stories=n_stories, max_documents=max_documents
        )
    tokenizer = get_tokenizer(corpus, vocab_size=vocab_size, cache_dir=cache_dir)
    train = pack(corpus.train, tokenizer, seq_len)
    test = pack(corpus.test, tokenizer, seq_len)
    for name, t in (("train", train), ("test", test)):
        if t.shape[0] == 0:
            raise ValueError(
                f"corpus {corpus.name!r}: the {name} split has fewer than seq_len={seq_len} tokens"
            )
    v = len(tokenizer)
    return DataBundle(
        tokenizer=tokenizer,
        train=train,
        test=test,
        unigram_loss=unigram_loss(train, test, v, exclude_ids=tokenizer.all_special_ids),
        corpus_name=corpus.name,
        fingerprint=corpus.fingerprint,
        unigram_loss_all=unigram_loss(train, test, v),
        requested_vocab_size=int(vocab_size),
    )
