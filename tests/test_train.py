"""Tests of sigprop.train, sigprop.nn.heads and ``sigprop train``: tiny models (depth 1–2, width 32, T = 16),
a few steps each, one small synthetic corpus shared by all tests."""

from __future__ import annotations

import json
import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tokenizers")
pytest.importorskip("transformers")

from sigprop.data import prepare  # noqa: E402
from sigprop.nn import TransformerStack  # noqa: E402
from sigprop.nn.heads import LanguageModel, UniformProbs, freeze_uniform_attention  # noqa: E402
from sigprop.spec import Spec  # noqa: E402
from sigprop.train import ESCAPE_MARGIN, TrainConfig, load_checkpoint, train  # noqa: E402

T = 16


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one thread is several times faster than two on a loaded 2-core machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return prepare("synthetic", seq_len=T, vocab_size=300, n_stories=120, cache_dir=tmp_path_factory.mktemp("cache"))


def tiny_spec(**kw) -> Spec:
    return Spec(**{"depth": 1, "width": 32, "seq_len": T, **kw})


def cfg(**kw) -> TrainConfig:
    base = dict(steps=6, batch_size=4, seq_len=T, eval_every=3, eval_rows=8, probe_rows=2, vocab_size=300, threads=1)
    base.update(kw)
    return TrainConfig(**base)


class AtStep:
    """Callback doing ``action(model)`` at the end of optimiser step ``step``."""

    def __init__(self, step, action):
        self.step, self.action = step, action

    def on_step_end(self, args, state, control, model=None, **kw):
        if state.global_step == self.step:
            self.action(model)


def _raise(exc):
    def f(model):
        raise exc

    return f


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


# ------------------------------------------------------------------------------------------ heads
def test_heads_shapes_loss_and_tying():
    spec = tiny_spec(depth=2)
    mlm = LanguageModel.from_spec(spec, vocab_size=50, seed=0)
    ids = torch.randint(0, 50, (3, T), generator=torch.Generator().manual_seed(0))
    labels = torch.full_like(ids, -100)
    labels[:, 3] = ids[:, 3]
    out = mlm(input_ids=ids, labels=labels)
    assert out["logits"].shape == (3, T, 50) and out["loss"].ndim == 0
    assert mlm.head.embedding.weight is mlm.stack.token_embedding.weight  # tied decoder
    # loss near ln V at init (small embeddings, LN'd features)
    assert abs(out["loss"].item() - math.log(50)) < 1.5
    dec = LanguageModel.from_spec(tiny_spec(causal=True, norm="pre"), vocab_size=50, seed=0)
    assert dec.objective == "clm" and dec.head.norm is not None
    out = dec(input_ids=ids, labels=ids)
    # causal: changing the last token does not change earlier logits
    ids2 = ids.clone()
    ids2[:, -1] = (ids2[:, -1] + 1) % 50
    assert torch.allclose(dec(input_ids=ids2)["logits"][:, :-1], out["logits"][:, :-1])
    with pytest.raises(ValueError, match="causal"):
        LanguageModel(TransformerStack(spec, vocab_size=50, seed=0), "clm")


def test_freeze_uniform_attention_gives_uniform_rows():
    from sigprop.measure import measure

    model = LanguageModel.from_spec(tiny_spec(depth=2, beta=3.0), vocab_size=50, seed=0)
    assert freeze_uniform_attention(model) == 2
    assert all(isinstance(b.attn.probs, UniformProbs) for b in model.stack.blocks)
    ids = torch.randint(0, 50, (2, T), generator=torch.Generator().manual_seed(1))
    m = measure(model, input_ids=ids)
    assert m["attn_entropy_norm"][1:] == pytest.approx([1.0, 1.0], abs=1e-9)


# ------------------------------------------------------------------------------------------ training
def test_deterministic_and_summary(data, tmp_path):
    r1 = train(tiny_spec(), cfg(), tmp_path / "a", data=data)
    r2 = train(tiny_spec(), cfg(), tmp_path / "b", data=data)
    assert r1.metrics == r2.metrics
    assert [r["step"] for r in r1.metrics] == [0, 3, 6]
    s = json.loads((tmp_path / "a" / "summary.json").read_text())
    for key in ("final_test_loss", "unigram_loss", "steps_to_escape", "diverged", "predicted_regime",
                "final_attention_entropy", "final_cosine"):
        assert key in s
    assert s["diverged"] is False and s["status"] == "completed"
    assert s["predicted_regime"] in ("trainable", "rank_collapse", "entropy_collapse")
    assert s["unigram_loss"] == pytest.approx(data.unigram_loss)
    assert len(s["final_attention_entropy"]) == 1 and 0 < s["final_attention_entropy"][0] <= 1
    esc = [r["step"] for r in r1.metrics if r["test_loss"] <= data.unigram_loss - ESCAPE_MARGIN]
    assert s["steps_to_escape"] == (esc[0] if esc else None)
    assert read_jsonl(tmp_path / "a" / "metrics.jsonl") == json.loads(json.dumps(r1.metrics))
    ck = load_checkpoint(tmp_path / "a")
    assert ck["step"] == 6
    # a different seed gives a different run
    r3 = train(tiny_spec(), cfg(seed=1, steps=3), None, data=data)
    assert r3.metrics[-1]["test_loss"] != r1.metrics[1]["test_loss"]


def test_resume_after_interrupt_and_after_crash_match_uninterrupted(data, tmp_path):
    c = cfg(steps=8, checkpoint_every=4)
    full = train(tiny_spec(), c, tmp_path / "full", data=data)
    assert [r["step"] for r in full.metrics] == [0, 3, 6, 8]

    # graceful: Ctrl-C-like interrupt at step 5 checkpoints step 5, then resume
    with pytest.raises(KeyboardInterrupt):
        train(tiny_spec(), c, tmp_path / "int", data=data, callbacks=[AtStep(5, _raise(KeyboardInterrupt()))])
    s = json.loads((tmp_path / "int" / "summary.json").read_text())
    assert s["status"] == "interrupted" and load_checkpoint(tmp_path / "int")["step"] == 5
    res = train(tiny_spec(), c, tmp_path / "int", data=data, resume=True)
    assert res.summary["resumed_from_step"] == 5
    assert res.metrics == full.metrics
    assert read_jsonl(tmp_path / "int" / "metrics.jsonl") == read_jsonl(tmp_path / "full" / "metrics.jsonl")

    # hard crash at step 7: the step-6 record was logged after the last checkpoint (step 4) and is redone
    with pytest.raises(RuntimeError):
        train(tiny_spec(), c, tmp_path / "crash", data=data, callbacks=[AtStep(7, _raise(RuntimeError("boom")))])
    assert [r["step"] for r in read_jsonl(tmp_path / "crash" / "metrics.jsonl")] == [0, 3, 6]
    res = train(tiny_spec(), c, tmp_path / "crash", data=data, resume=True)
    assert res.summary["resumed_from_step"] == 4
    assert read_jsonl(tmp_path / "crash" / "metrics.jsonl") == read_jsonl(tmp_path / "full" / "metrics.jsonl")
    assert res.summary["final_test_loss"] == full.summary["final_test_loss"]

    # resuming with different options is refused
    with pytest.raises(ValueError, match="lr"):
        train(tiny_spec(), cfg(steps=8, checkpoint_every=4, lr=1e-3), tmp_path / "full", data=data, resume=True)


def test_divergence_nan_keeps_last_good_checkpoint(data, tmp_path):
    def poison(model):
        with torch.no_grad():
            model.stack.blocks[0].mlp.fc1.weight[0, 0] = float("nan")

    r = train(tiny_spec(), cfg(steps=6, checkpoint_every=2, eval_every=2), tmp_path, data=data,
              callbacks=[AtStep(3, poison)])
    s = r.summary
    assert s["diverged"] is True and s["status"] == "diverged" and "non-finite" in s["reason"]
    assert s["steps_done"] == 3
    ck = load_checkpoint(tmp_path)
    assert ck["step"] == 2  # the last good one, the poisoned step-4 state was never saved
    assert all(torch.isfinite(v).all() for v in ck["model"].values())
    model = LanguageModel.from_spec(tiny_spec(), vocab_size=data.vocab_size, seed=0)
    model.load_state_dict(ck["model"])
    assert json.loads((tmp_path / "summary.json").read_text())["diverged"] is True


def test_huge_learning_rate_diverges(data, tmp_path):
    r = train(tiny_spec(), cfg(steps=6, lr=10.0, warmup=0.0), tmp_path, data=data)
    assert r.summary["diverged"] is True, r.metrics
    ck = load_checkpoint(tmp_path)
    assert all(torch.isfinite(v).all() for v in ck["model"].values())


def test_frozen_uniform_attention_run_keeps_qk(data):
    r = train(tiny_spec(), cfg(steps=3, freeze_uniform_attention=True), None, data=data)
    assert r.summary["final_attention_entropy"] == pytest.approx([1.0], abs=1e-9)


def test_decoder_twin_next_token(data, tmp_path):
    r = train(tiny_spec(causal=True), cfg(steps=3), tmp_path, data=data)
    assert r.summary["objective"] == "clm"
    assert r.summary["unigram_loss"] == pytest.approx(data.unigram_loss_all)
    assert math.isfinite(r.summary["final_test_loss"])


def test_config_validation():
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(lr=-1)
    with pytest.raises(ValueError, match="device"):
        TrainConfig(device="tpu")


# ------------------------------------------------------------------------------------------ CLI
def test_cli_missing_corpus_one_line(tmp_path, capsys):
    from sigprop.cli import main

    rc = main(["train", "--corpus", str(tmp_path / "nope.txt"), "--steps", "1", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and "fortunes" in err and "hf:" in err


def test_cli_tiny_run_json(tmp_path, capsys, monkeypatch):
    from sigprop.cli import main

    monkeypatch.setenv("SIGPROP_CACHE", str(tmp_path / "cache"))
    args = ["train", "--corpus", "synthetic", "--n-stories", "120", "--vocab-size", "300", "--steps", "2",
            "--batch-size", "4", "--seq-len", str(T), "--depth", "1", "--width", "32", "--eval-rows", "8",
            "--threads", "1", "--out", str(tmp_path / "run"), "--format", "json", "--no-progress"]
    rc = main(args)
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["steps_done"] == 2 and out["diverged"] is False
    assert (tmp_path / "run" / "metrics.jsonl").exists() and (tmp_path / "run" / "checkpoint.pt").exists()


def test_run_without_output_folder_completes(data):
    """Regression: with out=None a due mid-run checkpoint used to be reported as divergence and stop the run."""
    r = train(tiny_spec(), cfg(steps=6, checkpoint_every=2), None, data=data)
    assert r.summary["diverged"] is False and r.summary["status"] == "completed"
    assert r.metrics[-1]["step"] == 6


def test_collapse_warning_reported_once(data, monkeypatch, recwarn, caplog):
    """Regression: each CollapseWarning was printed twice during ``sigprop train`` — once by
    ``log.warning`` (logging's last-resort stderr handler) and again by ``warnings.warn`` (with the
    ``train.py`` source line). One onset must give exactly one message."""
    import logging
    import warnings

    from sigprop.monitor import CollapseMonitor, CollapseWarning

    monkeypatch.setattr(CollapseMonitor, "classify", lambda self, stats: {"rank_collapse": True,
                                                                         "entropy_collapse": False})
    warnings.simplefilter("always")
    with caplog.at_level(logging.WARNING, logger="sigprop.monitor"):
        train(tiny_spec(), cfg(steps=6), None, data=data)
    warned = [w for w in recwarn if issubclass(w.category, CollapseWarning)]
    logged = [r for r in caplog.records if r.name == "sigprop.monitor"]
    assert len(warned) + len(logged) == 1, (warned, logged)


# ------------------------------------------------------------------------------------------ issue 10 item 21
def test_summary_lines_say_plainly_whether_the_run_escaped(data):
    """Regression: the text said "escaped (≤ unigram − 0.3) at step never"."""
    from sigprop.training import summary_lines

    s = train(tiny_spec(), cfg(steps=2, eval_every=1), None, data=data).summary
    assert s["steps_to_escape"] is None  # 2 steps of a tiny model stay on the plateau
    text = "\n".join(summary_lines(s))
    assert "never" not in text
    assert f"did not escape below the unigram plateau {s['unigram_loss']:.4f} − 0.3 within 2 steps" in text
    escaped = "\n".join(summary_lines({**s, "steps_to_escape": 4, "steps_done": 6}))
    assert "escaped below the unigram plateau" in escaped and "at step 4" in escaped and "did not" not in escaped


def test_smaller_vocabulary_than_requested_is_said_in_one_line(tmp_path):
    """Regression: asking for 2000 tokens on a small corpus gave fewer with no message."""
    from sigprop.training import summary_lines

    small = prepare("synthetic", seq_len=T, vocab_size=2000, n_stories=120, cache_dir=tmp_path)
    assert small.vocab_size < 2000
    note = small.vocab_note
    assert note and f"{small.vocab_size} tokens" in note and "2000 requested" in note and "too small" in note
    s = train(tiny_spec(), cfg(steps=1, vocab_size=2000), None, data=small).summary
    assert s["vocab_size"] == small.vocab_size and s["requested_vocab_size"] == 2000
    lines = [x for x in summary_lines(s) if "vocabulary" in x]
    assert lines == [f"note: {note}"]
    # enough text for the requested size: no note
    assert prepare("synthetic", seq_len=T, vocab_size=120, n_stories=120, cache_dir=tmp_path).vocab_note is None


def test_loss_curve_png_beside_summary(data, tmp_path):
    """Regression: no loss-curve figure was written. It is atomic (no temporary file left) and gets the
    mode of a plain write (0o644 under umask 022), like summary.json."""
    import os
    import stat

    from sigprop.io import default_mode

    old = os.umask(0o022)
    try:
        train(tiny_spec(), cfg(steps=4, eval_every=2), tmp_path, data=data)
    finally:
        os.umask(old)
    png = tmp_path / "loss.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000
    assert stat.S_IMODE(png.stat().st_mode) == 0o644 == stat.S_IMODE((tmp_path / "summary.json").stat().st_mode)
    assert default_mode() == 0o666 & ~old
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_resume_keys_follow_the_config_fields():
    """RESUME_KEYS is derived from TrainConfig's field metadata: every field is either checked on resume
    or declared free to differ; runtime fields never change the result fingerprint."""
    import dataclasses

    from sigprop.training import RESUME_KEYS, RUNTIME_KEYS, TrainConfig, fingerprint

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(RESUME_KEYS) <= names and set(RUNTIME_KEYS) <= names and not set(RESUME_KEYS) & set(RUNTIME_KEYS)
    assert {"lr", "steps", "seed", "corpus", "vocab_size"} <= set(RESUME_KEYS)
    assert {"threads", "device", "cache_dir", "stop_after"} == set(RUNTIME_KEYS)
    spec = tiny_spec()
    base = TrainConfig().to_dict()
    assert fingerprint(spec, {**base, "threads": 7}) == fingerprint(spec, base)
    assert fingerprint(spec, {**base, "lr": 1e-3}) != fingerprint(spec, base)


def test_cuda_error_names_the_parameter(data):
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(ValueError, match="device='cuda'") as e:
        train(tiny_spec(), cfg(device="cuda"), None, data=data)
    assert "--" not in str(e.value)


def test_cli_text_output_says_escape_plainly_and_names_loss_png(tmp_path, capsys, monkeypatch):
    """Regression (issue 10 item 21): the CLI printed "escaped … at step never" from its own copy of the
    summary text; it now prints the library's summary lines and the loss-curve PNG it wrote."""
    from sigprop.cli import main

    monkeypatch.setenv("SIGPROP_CACHE", str(tmp_path / "cache"))
    args = ["train", "--corpus", "synthetic", "--n-stories", "120", "--vocab-size", "300", "--steps", "2",
            "--batch-size", "4", "--seq-len", str(T), "--depth", "1", "--width", "32", "--eval-rows", "8",
            "--threads", "1", "--out", str(tmp_path / "run"), "--no-progress"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "never" not in text
    assert "escape" in text and "loss.png" in text
    assert (tmp_path / "run" / "loss.png").stat().st_size > 0
