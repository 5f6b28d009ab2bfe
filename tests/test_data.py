"""Tests of sigprop.data. Every test writes its own small texts: no network, no Debian package needed
(one test uses the real fortunes when installed)."""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tokenizers")
pytest.importorskip("transformers")

import sigprop.data as sd  # noqa: E402
import sigprop.data.corpus as corpus_mod  # noqa: E402
import sigprop.data.tokenizer as tok_mod  # noqa: E402
from sigprop.data import (  # noqa: E402
    IGNORE_INDEX,
    CorpusUnavailable,
    clm_targets,
    generate_stories,
    get_tokenizer,
    load_corpus,
    mlm_collate,
    pack,
    parse_text,
    prepare,
    split_documents,
    unigram_loss,
)
from sigprop.data.synthetic import COLOURS, NAMES, OBJECTS  # noqa: E402

STORY_TEXT = (
    "Lily had a red ball. She liked to play with it in the park.\n\n"
    "Tom had a blue kite. Tom flew the blue kite on the hill.\n\n"
    "Lily gave the red ball to Tom, and Tom gave the blue kite to Lily.\n\n"
    "The dog ran to the lake. The dog was happy and wet.\n"
)


@pytest.fixture(scope="module")
def small_corpus() -> sd.Corpus:
    return load_corpus("synthetic", n_stories=300, seed=3)


@pytest.fixture(scope="module")
def small_tokenizer(small_corpus: sd.Corpus, tmp_path_factory: pytest.TempPathFactory):
    return get_tokenizer(small_corpus, vocab_size=2000, cache_dir=tmp_path_factory.mktemp("tokcache"))


# --- corpora and the split ---------------------------------------------------------------------------


def test_split_deterministic_disjoint_and_complete() -> None:
    docs = [f"document number {i} about things" for i in range(2000)] + ["document number 7 about things"]
    train, test = split_documents(docs, seed=0, test_fraction=0.05)
    assert (train, test) == split_documents(list(docs), seed=0, test_fraction=0.05)
    assert not set(train) & set(test)
    assert sorted(train + test) == sorted(set(docs))  # duplicates dropped, nothing lost
    # 2000 Bernoulli(0.05) draws: mean 100, sd 9.7; +-5 sd
    assert 50 < len(test) < 150
    # source order is kept within each side
    assert train == [d for d in dict.fromkeys(docs) if d in set(train)]


def test_split_is_a_stable_per_document_hash() -> None:
    docs = [f"story {i}: the cat sat on the mat" for i in range(500)]
    train, test = split_documents(docs, seed=0, test_fraction=0.05)

    # the documented rule, computed independently: pins the split across versions and machines
    def expected_test(text: str) -> bool:
        h = hashlib.blake2b(b"0\x00" + text.encode("utf-8"), digest_size=8).digest()
        return int.from_bytes(h, "big") < int(0.05 * 2**64)

    assert test == [d for d in docs if expected_test(d)]
    # each document's side does not depend on the other documents or their order
    train2, test2 = split_documents(list(reversed(docs[:250])) + ["extra text"], seed=0, test_fraction=0.05)
    assert set(test2) - {"extra text"} == set(test) & set(docs[:250])
    # another seed gives another split
    assert split_documents(docs, seed=1, test_fraction=0.05)[1] != test


def test_tiny_corpus_gets_both_splits() -> None:
    train, test = split_documents(["one", "two", "three"], test_fraction=0.05)
    assert len(test) == 1 and len(train) == 2


def test_latin1_fallback(tmp_path: Path) -> None:
    (tmp_path / "latin.txt").write_bytes("caf\xe9 au lait\n%\nna\xefve reader\n%\n".encode("latin-1"))
    (tmp_path / "utf8.txt").write_bytes("caf\u00e9 cr\u00e8me\n".encode())
    assert sd.read_text_file(tmp_path / "latin.txt") == "caf\u00e9 au lait\n%\nna\u00efve reader\n%\n"
    corpus = load_corpus(tmp_path / "latin.txt", test_fraction=0.0)
    assert corpus.train == ["caf\u00e9 au lait", "na\u00efve reader"]
    assert load_corpus(tmp_path / "utf8.txt", test_fraction=0.0).train == ["caf\u00e9 cr\u00e8me"]


def test_percent_separated_parsing() -> None:
    text = "first entry\n  -- someone\n%\n\n%\nsecond %\n%% not a separator\n%\nthird\r\n%\r\n  \n"
    assert parse_text(text) == ["first entry\n  -- someone", "second %\n%% not a separator", "third"]


def test_paragraph_parsing_and_overstrike() -> None:
    text = "para one\nline two\n\n \n\npara two\n\n\n_\bu_\bn_\bd_\be_\br a word\n"
    assert parse_text(text) == ["para one\nline two", "para two", "under a word"]


def test_folder_loading(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z.txt").write_text("zeta one\n\nzeta two\n")
    (tmp_path / "a.txt").write_text("alpha one\n%\nalpha two\n")
    (tmp_path / "c.txt").write_text("gamma\n")
    (tmp_path / "notes.md").write_text("ignored\n")
    corpus = load_corpus(tmp_path, test_fraction=0.0)
    # sorted by relative path: a.txt, b/z.txt, c.txt; '%' format in a.txt, paragraphs in z.txt
    assert corpus.train == ["alpha one", "alpha two", "zeta one", "zeta two", "gamma"]
    assert corpus.test == []
    assert corpus.name == str(tmp_path)
    again = load_corpus(str(tmp_path), test_fraction=0.0)
    assert again.fingerprint == corpus.fingerprint
    (tmp_path / "c.txt").write_text("gamma changed\n")
    assert load_corpus(tmp_path, test_fraction=0.0).fingerprint != corpus.fingerprint


def test_fortunes_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "art").write_bytes(b"A painting.\n%\nA statue.\n%\n")
    (tmp_path / "art.dat").write_bytes(b"\x00\x00\x00\x02binary index")
    (tmp_path / "art.u8").symlink_to(tmp_path / "art")
    (tmp_path / "food").write_bytes("Cr\xe8me br\xfbl\xe9e.\n%\n".encode("latin-1"))
    monkeypatch.setattr(corpus_mod, "FORTUNES_DIR", tmp_path)
    corpus = load_corpus("fortunes", test_fraction=0.0)
    assert corpus.train == ["A painting.", "A statue.", "Cr\u00e8me br\u00fbl\u00e9e."]


def _assert_unavailable_message(message: str) -> None:
    assert "\n" not in message
    assert "apt-get install fortunes" in message
    assert "local text file" in message
    assert "hf:NAME" in message
    assert "synthetic" in message


def test_corpus_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(corpus_mod, "FORTUNES_DIR", tmp_path / "not-installed")
    with pytest.raises(CorpusUnavailable) as info:
        load_corpus("fortunes")
    assert isinstance(info.value, ValueError)
    _assert_unavailable_message(str(info.value))
    with pytest.raises(CorpusUnavailable) as info:
        load_corpus(tmp_path / "missing.txt")
    _assert_unavailable_message(str(info.value))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusUnavailable) as info:
        load_corpus(tmp_path / "empty")
    _assert_unavailable_message(str(info.value))


@pytest.mark.skipif(not corpus_mod.FORTUNES_DIR.is_dir(), reason="Debian's fortunes package is not installed")
def test_real_fortunes() -> None:
    corpus = load_corpus("fortunes")
    n = len(corpus.train) + len(corpus.test)
    assert n > 10_000
    assert abs(len(corpus.test) / n - 0.05) < 0.01
    assert load_corpus("fortunes").fingerprint == corpus.fingerprint
    assert not any("\x00" in d for d in corpus.documents)  # text, not the binary *.dat index files
    assert all(d == d.strip() and d for d in corpus.train[:1000])


# --- synthetic stories ----------------------------------------------------------------------------


def test_synthetic_deterministic_by_seed() -> None:
    a = generate_stories(50, seed=0)
    assert a == generate_stories(50, seed=0)
    assert a != generate_stories(50, seed=1)
    assert len(set(a) & set(generate_stories(50, seed=1))) < 5
    c0 = load_corpus("synthetic", n_stories=50, seed=0)
    assert c0.fingerprint == load_corpus("synthetic:50", seed=0).fingerprint
    assert c0.fingerprint != load_corpus("synthetic", n_stories=50, seed=1).fingerprint


def test_synthetic_stories_repeat_their_entities() -> None:
    stories = generate_stories(200, seed=5)
    words: set[str] = set()
    hero_names = []
    for s in stories:
        words.update(re.findall(r"[a-z']+", s.lower()))
        names = Counter(w for w in re.findall(r"[A-Z][a-z]+", s) if w in NAMES)
        name, n = names.most_common(1)[0]
        assert n >= 3, s  # the hero is named again and again
        assert len(names) >= 2, s  # there is a second character
        pairs = Counter(re.findall(rf"\b({'|'.join(COLOURS)}) ({'|'.join(OBJECTS)})\b", s))
        assert pairs.most_common(1)[0][1] >= 3, s  # "the red ball" comes back
        # the colour of each object is consistent within the story: it must be read from context
        by_object: dict[str, set[str]] = {}
        for colour, obj in pairs:
            by_object.setdefault(obj, set()).add(colour)
        assert all(len(cs) == 1 for cs in by_object.values()), s
        hero_names.append(name)
    assert len(set(hero_names)) > 10  # and entities change from story to story
    assert len(words) < 2000


# --- tokenizer ------------------------------------------------------------------------------------------


def test_tokenizer_cache_hit(
    small_corpus: sd.Corpus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    real_train = tok_mod.train_wordpiece

    def counting_train(docs, vocab_size):
        calls.append(vocab_size)
        return real_train(docs, vocab_size)

    monkeypatch.setattr(tok_mod, "train_wordpiece", counting_train)
    first = get_tokenizer(small_corpus, vocab_size=300, cache_dir=tmp_path)
    path = tok_mod.tokenizer_path(small_corpus, 300, tmp_path)
    assert path.is_file() and calls == [300]
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]  # no temporary left over
    mtime = path.stat().st_mtime_ns
    second = get_tokenizer(small_corpus, vocab_size=300, cache_dir=tmp_path)
    assert calls == [300]  # not retrained
    assert path.stat().st_mtime_ns == mtime
    assert second.get_vocab() == first.get_vocab()
    get_tokenizer(small_corpus, vocab_size=200, cache_dir=tmp_path)  # another key: trains again
    assert calls == [300, 200]
    # $SIGPROP_CACHE is the default location
    monkeypatch.setenv("SIGPROP_CACHE", str(tmp_path / "env"))
    get_tokenizer(small_corpus, vocab_size=300)
    assert (tmp_path / "env" / "tokenizers" / path.name).is_file()


def test_tokenizer_training_is_deterministic(small_corpus: sd.Corpus) -> None:
    a = tok_mod.train_wordpiece(small_corpus.train, 400)
    b = tok_mod.train_wordpiece(small_corpus.train, 400)
    assert a.get_vocab() == b.get_vocab()
    assert a.get_vocab_size() <= 400


def test_tokenizer_special_tokens_and_round_trip(small_tokenizer) -> None:
    tok = small_tokenizer
    assert [tok.pad_token, tok.unk_token, tok.cls_token, tok.sep_token, tok.mask_token] == list(
        sd.SPECIAL_TOKENS
    )
    assert [tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id] == [
        0,
        1,
        2,
        3,
        4,
    ]
    text = "Lily had a red ball. Tom gave the red ball to Lily!"
    ids = tok(text)["input_ids"]
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    assert tok.unk_token_id not in ids
    plain = tok(text, add_special_tokens=False)["input_ids"]
    assert plain == ids[1:-1]
    decoded = tok.decode(plain)
    assert decoded.replace(" ", "") == text.lower().replace(" ", "")
    assert tok(decoded, add_special_tokens=False)["input_ids"] == plain
    assert tok.tokenize("Lily, a [MASK]!") == ["lily", ",", "a", "[MASK]", "!"]
    # the HuggingFace collator accepts it
    from transformers import DataCollatorForLanguageModeling

    out = DataCollatorForLanguageModeling(tok)([{"input_ids": ids}, {"input_ids": ids}])
    assert out["input_ids"].shape == out["labels"].shape == (2, len(ids))


# --- packing ------------------------------------------------------------------------------------------


def test_pack_shapes_and_order(small_tokenizer) -> None:
    tok = small_tokenizer
    docs = ["Lily had a red ball.", "Tom had a blue kite.", "The dog ran to the park.", "Mia was happy."]
    expected: list[int] = []
    for d in docs:
        expected += tok(d, add_special_tokens=False)["input_ids"] + [tok.sep_token_id]
    for seq_len in (1, 4, 7, len(expected)):
        rows = pack(docs, tok, seq_len)
        n = len(expected) // seq_len
        assert rows.dtype == torch.long and tuple(rows.shape) == (n, seq_len)
        assert rows.flatten().tolist() == expected[: n * seq_len]  # concatenation order, tail dropped
    assert tuple(pack(docs, tok, len(expected) + 1).shape) == (0, len(expected) + 1)
    assert torch.equal(pack(docs, tok, 5), pack(docs, tok, 5))


# --- collation --------------------------------------------------------------------------------------------


def _mixed_batch(tok, rows: int = 64, cols: int = 256):
    g = torch.Generator().manual_seed(123)
    ids = torch.randint(5, len(tok), (rows, cols), generator=g)
    ids[:, 0] = tok.cls_token_id
    ids[:, 100::50] = tok.sep_token_id
    ids[-4:, -20:] = tok.pad_token_id
    return ids


def test_mlm_masking_proportions(small_tokenizer) -> None:
    tok = small_tokenizer
    ids = _mixed_batch(tok)
    original = ids.clone()
    out = mlm_collate(ids, tok, mlm_probability=0.15, generator=torch.Generator().manual_seed(0))
    assert torch.equal(ids, original)  # input untouched
    special = torch.isin(ids, torch.tensor(tok.all_special_ids))
    selected = out["labels"] != IGNORE_INDEX
    # specials are never selected, never changed
    assert not (selected & special).any()
    assert torch.equal(out["input_ids"][special], ids[special])
    assert torch.equal(out["labels"][selected], ids[selected])
    # unselected positions are unchanged
    assert torch.equal(out["input_ids"][~selected], ids[~selected])
    # Binomial tolerances: with n trials and rate p, the count has sd sqrt(n p (1-p)); we allow 5 sd,
    # i.e. a false failure probability below 1e-6 per check (and the generator is seeded anyway).
    n = int((~special).sum())
    k = int(selected.sum())
    assert abs(k - 0.15 * n) < 5 * math.sqrt(n * 0.15 * 0.85)
    became_mask = int((out["input_ids"][selected] == tok.mask_token_id).sum())
    unchanged = int((out["input_ids"][selected] == ids[selected]).sum())
    other = k - became_mask - unchanged
    # "random" replacements equal the original with probability 1/(V-5); small but counted as unchanged
    q = 1.0 / (len(tok) - 5)
    for count, p in ((became_mask, 0.8), (unchanged, 0.1 + 0.1 * q), (other, 0.1 * (1 - q))):
        assert abs(count - p * k) < 5 * math.sqrt(k * p * (1 - p)), (count, p, k)
    # random replacements are ordinary tokens
    replaced = selected & (out["input_ids"] != tok.mask_token_id) & (out["input_ids"] != ids)
    assert not torch.isin(out["input_ids"][replaced], torch.tensor(tok.all_special_ids)).any()
    assert torch.equal(out["attention_mask"], (ids != tok.pad_token_id).long())


def test_mlm_determinism(small_tokenizer) -> None:
    tok = small_tokenizer
    ids = _mixed_batch(tok, 8, 64)
    a = mlm_collate(ids, tok, generator=torch.Generator().manual_seed(7))
    b = mlm_collate(list(ids), tok, generator=torch.Generator().manual_seed(7))
    c = mlm_collate(ids, tok, generator=torch.Generator().manual_seed(8))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["labels"], c["labels"])
    d = mlm_collate([{"input_ids": r.tolist()} for r in ids], tok, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a["input_ids"], d["input_ids"])


def test_clm_targets() -> None:
    ids = torch.tensor([[5, 6, 7, 0], [8, 9, 10, 11]])
    out = clm_targets(ids, pad_token_id=0)
    assert torch.equal(out["input_ids"], ids)
    assert out["labels"].tolist() == [[5, 6, 7, IGNORE_INDEX], [8, 9, 10, 11]]
    assert out["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
    assert torch.equal(clm_targets(ids)["labels"], ids)


# --- unigram baseline -----------------------------------------------------------------------------------


def test_unigram_loss_hand_computation() -> None:
    # V=3, train counts (2, 1, 0) -> add-one (3, 2, 1)/6; test tokens 0 and 2
    expected = -(math.log(3 / 6) + math.log(1 / 6)) / 2
    assert unigram_loss([0, 0, 1], [0, 2], 3) == pytest.approx(expected, rel=1e-12)
    # 2-D tensors are flattened: counts (3, 1, 0) -> (4, 2, 1)/7
    assert unigram_loss(torch.tensor([[0, 0], [1, 0]]), torch.tensor([1]), 3) == pytest.approx(
        -math.log(2 / 7), rel=1e-12
    )
    # excluding id 0: counts over {1, 2} = (1+1, 0+1)/3; the excluded test token is dropped
    assert unigram_loss([0, 0, 1], [0, 1, 2], 3, exclude_ids=[0]) == pytest.approx(
        -(math.log(2 / 3) + math.log(1 / 3)) / 2, rel=1e-12
    )
    with pytest.raises(ValueError):
        unigram_loss([0, 3], [0], 3)


def test_unigram_loss_uniform_is_log_v() -> None:
    v = 50
    train = torch.arange(v).repeat(7)
    test = torch.randint(0, v, (1000,), generator=torch.Generator().manual_seed(0))
    assert unigram_loss(train, test, v) == pytest.approx(math.log(v), rel=1e-12)
    assert unigram_loss([], [3, 4], v) == pytest.approx(math.log(v), rel=1e-12)  # all smoothing


# --- bundle and the hf route -------------------------------------------------------------------------------


def test_prepare_bundle(tmp_path: Path) -> None:
    bundle = prepare("synthetic", seq_len=32, vocab_size=500, n_stories=200, cache_dir=tmp_path, seed=2)
    assert bundle.train.dtype == torch.long and bundle.train.shape[1] == 32 and bundle.test.shape[1] == 32
    assert bundle.train.shape[0] > 10 * bundle.test.shape[0] > 0
    assert bundle.vocab_size == len(bundle.tokenizer) <= 500
    assert int(bundle.train.max()) < bundle.vocab_size
    assert 1.0 < bundle.unigram_loss < math.log(bundle.vocab_size)
    assert bundle.corpus_name == "synthetic"
    again = prepare("synthetic", seq_len=32, vocab_size=500, n_stories=200, cache_dir=tmp_path, seed=2)
    assert again.fingerprint == bundle.fingerprint and torch.equal(again.train, bundle.train)
    (tmp_path / "stories.txt").write_text(STORY_TEXT * 1)
    local = prepare(
        tmp_path / "stories.txt", seq_len=8, vocab_size=100, cache_dir=tmp_path, test_fraction=0.3
    )
    assert local.corpus_name == str(tmp_path / "stories.txt") and local.train.shape[1] == 8


def test_hf_text_route_on_local_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    path = tmp_path / "stories.txt"
    path.write_text(STORY_TEXT)
    via_hf = load_corpus(f"hf:text:{path}", test_fraction=0.0)
    direct = load_corpus(path, test_fraction=0.0)
    assert via_hf.train == direct.train and len(direct.train) == 4
    assert via_hf.name == f"hf:text:{path}"
    streamed = load_corpus(f"hf:text:{path}", test_fraction=0.0, max_documents=2)
    assert streamed.train == direct.train[:2]
    with pytest.raises(CorpusUnavailable) as info:
        load_corpus(f"hf:text:{tmp_path / 'missing.txt'}")
    _assert_unavailable_message(str(info.value))
