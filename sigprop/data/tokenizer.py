"""A BERT-style WordPiece tokenizer trained offline on a corpus' training split, cached on disk.

Recipe (as the paper's ``tiny_tokenizer.py`` for TinyStories, vocabulary 2000): BERT normaliser
(clean text, lowercase, strip accents), BERT pre-tokeniser (split on whitespace and punctuation),
WordPiece with ``##`` continuation prefix (vocabulary learnt by :func:`learn_wordpiece_vocab`, the
algorithm of ``tokenizers.trainers.WordPieceTrainer`` made deterministic), special tokens
``[PAD] [UNK] [CLS] [SEP] [MASK]`` with ids 0..4, and a ``[CLS] $A [SEP]`` post-processor for ``tokenizer(text)`` calls (``pack`` bypasses it).

The vocabulary can come out smaller than requested when the corpus has fewer distinct words and
pieces (the synthetic corpus does): use ``len(tokenizer)`` for the embedding size, never the request.

The trained tokenizer is cached as ``<cache_dir>/tokenizers/wordpiece-<recipe>-v<vocab>-<fingerprint>.json``
and written atomically (temporary file in the same folder, then :func:`os.replace`), so concurrent runs
never read a half-written file. ``cache_dir`` defaults to ``$SIGPROP_CACHE`` or ``~/.cache/sigprop``.
"""

from __future__ import annotations

import heapq
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING

from sigprop.data.corpus import Corpus

if TYPE_CHECKING:
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

__all__ = [
    "SPECIAL_TOKENS",
    "RECIPE",
    "default_cache_dir",
    "tokenizer_path",
    "get_tokenizer",
    "train_wordpiece",
    "learn_wordpiece_vocab",
]

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
#: Special tokens, in id order (``[PAD]`` = 0 ... ``[MASK]`` = 4).
SPECIAL_TOKENS: tuple[str, ...] = (PAD, UNK, CLS, SEP, MASK)
#: Version of the training recipe; part of the cache key so a recipe change never reuses old files.
RECIPE = "bertwp2"
_PREFIX = "##"
_MAX_CHARS = 100


def default_cache_dir() -> Path:
    """``$SIGPROP_CACHE`` if set, else ``~/.cache/sigprop``."""
    env = os.environ.get("SIGPROP_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sigprop"


def tokenizer_path(corpus: Corpus, vocab_size: int, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the tokenizer for ``corpus`` and ``vocab_size`` is (or will be) cached."""
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return root / "tokenizers" / f"wordpiece-{RECIPE}-v{vocab_size}-{corpus.fingerprint}.json"


def _word_counts(documents: Iterable[str], tok: Tokenizer) -> Counter[str]:
    """Counts of the normalised, pre-tokenised words of ``documents``."""
    normalizer, pre_tokenizer = tok.normalizer, tok.pre_tokenizer
    assert normalizer is not None and pre_tokenizer is not None
    counts: Counter[str] = Counter()
    for doc in documents:
        counts.update(w for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(doc)))
    return counts


def learn_wordpiece_vocab(
    word_counts: Mapping[str, int], size: int, max_chars: int = _MAX_CHARS
) -> list[str]:
    """Learn at most ``size`` WordPiece tokens from word counts, deterministically.

    The algorithm of HuggingFace's ``WordPieceTrainer`` (BPE merges on ``##``-prefixed continuation
    pieces): start from the alphabet (first characters as is, later characters as ``##c``), then
    repeatedly merge the adjacent pair with the largest corpus count into a new token. Ties are broken
    by the lexicographically smallest pair, and ids follow (alphabet sorted, then merge order), so the
    result is identical on every run and machine; ``tokenizers``' own trainer breaks ties by hash-map
    order and differs from run to run. Words longer than ``max_chars`` (which tokenise to ``[UNK]``)
    are ignored. If the alphabet alone exceeds ``size``, its most frequent symbols are kept.
    """
    words = sorted(w for w in word_counts if 0 < len(w) <= max_chars)
    freq = [int(word_counts[w]) for w in words]
    seqs = [[w[0]] + [_PREFIX + ch for ch in w[1:]] for w in words]
    symbol_counts: Counter[str] = Counter()
    for s, f in zip(seqs, freq, strict=True):
        for t in s:
            symbol_counts[t] += f
    alphabet = sorted(symbol_counts)
    if len(alphabet) > size:
        alphabet = sorted(sorted(alphabet, key=lambda t: (-symbol_counts[t], t))[:size])
    vocab = list(alphabet)
    known = set(vocab)
    pair_counts: dict[tuple[str, str], int] = defaultdict(int)
    where: dict[tuple[str, str], set[int]] = defaultdict(set)
    for i, (s, f) in enumerate(zip(seqs, freq, strict=True)):
        for pair in pairwise(s):
            pair_counts[pair] += f
            where[pair].add(i)
    heap = [(-c, a, b) for (a, b), c in pair_counts.items()]
    heapq.heapify(heap)
    while len(vocab) < size and heap:
        neg, a, b = heapq.heappop(heap)
        count = pair_counts.get((a, b), 0)
        if count <= 0:
            continue
        if count != -neg:  # stale heap entry (the count went down): requeue with the current count
            heapq.heappush(heap, (-count, a, b))
            continue
        new = a + b[len(_PREFIX) :]
        if new not in known:
            known.add(new)
            vocab.append(new)
        touched: set[tuple[str, str]] = set()
        for i in sorted(where.pop((a, b), ())):
            s, f = seqs[i], freq[i]
            for pair in pairwise(s):
                pair_counts[pair] -= f
                where[pair].discard(i)
            merged: list[str] = []
            j = 0
            while j < len(s):
                if j + 1 < len(s) and s[j] == a and s[j + 1] == b:
                    merged.append(new)
                    j += 2
                else:
                    merged.append(s[j])
                    j += 1
            seqs[i] = merged
            for pair in pairwise(merged):
                pair_counts[pair] += f
                where[pair].add(i)
                if new in pair:
                    touched.add(pair)
        pair_counts.pop((a, b), None)
        for pair in sorted(touched):
            if pair_counts[pair] > 0:
                heapq.heappush(heap, (-pair_counts[pair], *pair))
    return vocab


def _empty_tokenizer(vocab: dict[str, int] | None = None) -> Tokenizer:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    model = (
        models.WordPiece(
            vocab=vocab, unk_token=UNK, continuing_subword_prefix=_PREFIX, max_input_chars_per_word=_MAX_CHARS
        )
        if vocab
        else models.WordPiece(unk_token=UNK)
    )
    tok = Tokenizer(model)
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix=_PREFIX)
    return tok


def train_wordpiece(documents: Iterable[str], vocab_size: int) -> Tokenizer:
    """Train the WordPiece tokenizer of the module docstring on ``documents`` (no caching)."""
    from tokenizers import processors

    counts = _word_counts(documents, _empty_tokenizer())
    pieces = learn_wordpiece_vocab(counts, vocab_size - len(SPECIAL_TOKENS))
    vocab = {t: i for i, t in enumerate([*SPECIAL_TOKENS, *pieces])}
    tok = _empty_tokenizer(vocab)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{CLS} $A {SEP}",
        pair=f"{CLS} $A {SEP} $B:1 {SEP}:1",
        special_tokens=[(CLS, vocab[CLS]), (SEP, vocab[SEP])],
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
        from sigprop.io import atomic_path

        with atomic_path(path) as tmp:
            tok.save(str(tmp))
    return _wrap(tok)
