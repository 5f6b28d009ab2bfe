"""A BERT-style WordPiece tokenizer trained offline on a corpus' training split, cached on disk.

Recipe (as the paper's ``tiny_tokenizer.py`` for TinyStories, vocabulary 2000): BERT normaliser
(clean text, lowercase, strip accents), BERT pre-tokeniser (split on whitespace and punctuation),
WordPiece with ``##`` continuation prefix, special tokens ``[PAD] [UNK] [CLS] [SEP] [MASK]`` with ids
0..4, and a ``[CLS] $A [SEP]`` post-processor for ``tokenizer(text)`` calls (``pack`` bypasses it).

The vocabulary can come out smaller than requested when the corpus has fewer distinct words and
pieces (the synthetic corpus does): use ``len(tokenizer)`` for the embedding size, never the request.

The trained tokenizer is cached as ``<cache_dir>/tokenizers/wordpiece-<recipe>-v<vocab>-<fingerprint>.json``
and written atomically (temporary file in the same folder, then :func:`os.replace`), so concurrent runs
never read a half-written file. ``cache_dir`` defaults to ``$SIGPROP_CACHE`` or ``~/.cache/sigprop``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from sigprop.data.corpus import Corpus

if TYPE_CHECKING:
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

__all__ = ["SPECIAL_TOKENS", "RECIPE", "default_cache_dir", "tokenizer_path", "get_tokenizer", "train_wordpiece"]

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
#: Special tokens, in id order (``[PAD]`` = 0 ... ``[MASK]`` = 4).
SPECIAL_TOKENS: tuple[str, ...] = (PAD, UNK, CLS, SEP, MASK)
#: Version of the training recipe; part of the cache key so a recipe change never reuses old files.
RECIPE = "bertwp1"


def default_cache_dir() -> Path:
    """``$SIGPROP_CACHE`` if set, else ``~/.cache/sigprop``."""
    env = os.environ.get("SIGPROP_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sigprop"


def tokenizer_path(corpus: Corpus, vocab_size: int, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the tokenizer for ``corpus`` and ``vocab_size`` is (or will be) cached."""
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return root / "tokenizers" / f"wordpiece-{RECIPE}-v{vocab_size}-{corpus.fingerprint}.json"


def train_wordpiece(documents: list[str], vocab_size: int) -> Tokenizer:
    """Train the WordPiece tokenizer of the module docstring on ``documents`` (no caching)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordPiece(unk_token=UNK, continuing_subword_prefix="##", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        continuing_subword_prefix="##",
        show_progress=False,
    )
    tok.train_from_iterator(documents, trainer=trainer, length=len(documents))
    cls_id, sep_id = tok.token_to_id(CLS), tok.token_to_id(SEP)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{CLS} $A {SEP}",
        pair=f"{CLS} $A {SEP} $B:1 {SEP}:1",
        special_tokens=[(CLS, cls_id), (SEP, sep_id)],
    )
    return tok


def _wrap(tok: Tokenizer) -> PreTrainedTokenizerFast:
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token=UNK,
        pad_token=PAD,
        cls_token=CLS,
        sep_token=SEP,
        mask_token=MASK,
    )


def get_tokenizer(
    corpus: Corpus, vocab_size: int = 2000, cache_dir: str | os.PathLike[str] | None = None
) -> PreTrainedTokenizerFast:
    """The WordPiece tokenizer of ``corpus.train``, from the cache or trained (and cached) now.

    Returns a ``transformers.PreTrainedTokenizerFast`` with pad/unk/cls/sep/mask tokens set, so the
    HuggingFace collators work with it.
    """
    if vocab_size < len(SPECIAL_TOKENS) + 1:
        raise ValueError(f"vocab_size must exceed the {len(SPECIAL_TOKENS)} special tokens, got {vocab_size}")
    from tokenizers import Tokenizer

    path = tokenizer_path(corpus, vocab_size, cache_dir)
    tok: Tokenizer | None = None
    if path.is_file():
        try:
            tok = Tokenizer.from_file(str(path))
        except Exception:  # noqa: BLE001 - a corrupt cache file is retrained and replaced
            tok = None
    if tok is None:
        tok = train_wordpiece(corpus.train, vocab_size)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
        os.close(fd)
        try:
            tok.save(tmp)
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    return _wrap(tok)
