"""Offline data for sigprop's training experiments (needs the ``hf`` extra: torch, transformers,
tokenizers; ``hf:`` corpora also need ``datasets``).

- :func:`load_corpus`: ``"fortunes"`` (Debian), ``"synthetic"`` (generated TinyStories-like stories), a
  local text file/folder, or ``"hf:NAME[:CONFIG]"``; deterministic hash-based train/test split;
  :class:`CorpusUnavailable` (one line, says how to get a corpus) when none can be loaded.
- :func:`get_tokenizer`: BERT-style WordPiece trained on the training split, cached on disk.
- :func:`pack`, :func:`mlm_collate`, :func:`clm_targets`: fixed-length rows and LM targets.
- :func:`unigram_loss`: the unigram plateau a run must escape.
- :func:`prepare` -> :class:`DataBundle`: all of the above in one call.

Example::

    from sigprop.data import prepare, mlm_collate
    import torch
    data = prepare("synthetic", seq_len=64)
    g = torch.Generator().manual_seed(0)
    batch = mlm_collate(data.train[:32], data.tokenizer, generator=g)
"""

from sigprop.data.batching import IGNORE_INDEX, clm_targets, mlm_collate, pack, unigram_loss
from sigprop.data.bundle import DataBundle, prepare
from sigprop.data.corpus import (
    FORTUNES_DIR,
    Corpus,
    CorpusUnavailable,
    load_corpus,
    parse_text,
    read_text_file,
    split_documents,
)
from sigprop.data.synthetic import DEFAULT_N_STORIES, generate_stories
from sigprop.data.tokenizer import SPECIAL_TOKENS, default_cache_dir, get_tokenizer, tokenizer_path

__all__ = [
    "IGNORE_INDEX",
    "SPECIAL_TOKENS",
    "DEFAULT_N_STORIES",
    "FORTUNES_DIR",
    "Corpus",
    "CorpusUnavailable",
    "DataBundle",
    "clm_targets",
    "default_cache_dir",
    "generate_stories",
    "get_tokenizer",
    "load_corpus",
    "mlm_collate",
    "pack",
    "parse_text",
    "prepare",
    "read_text_file",
    "split_documents",
    "tokenizer_path",
    "unigram_loss",
]
