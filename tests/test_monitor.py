"""Tests of sigprop.monitor.CollapseMonitor: probes, thresholds, warn-on-onset, HuggingFace compatibility."""

from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from sigprop.monitor import CollapseMonitor, CollapseWarning, probe  # noqa: E402
from sigprop.nn.heads import LanguageModel  # noqa: E402
from sigprop.spec import Spec  # noqa: E402

T = 16


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _model(beta=1.0, depth=2):
    return LanguageModel.from_spec(Spec(depth=depth, width=32, seq_len=T, beta=beta), vocab_size=40, seed=0)


def _ids(n=2):
    return torch.randint(0, 40, (n, T), generator=torch.Generator().manual_seed(0))


def test_probe_per_layer_and_restores_mode():
    m = _model()
    m.train()
    stats = probe(m, {"input_ids": _ids()})
    assert m.training
    assert len(stats["attn_entropy_norm"]) == 2 and len(stats["cosine"]) == 2
    assert all(0 < e <= 1 for e in stats["attn_entropy_norm"])
    # small β: near-uniform attention; large β: condensed
    lo = probe(_model(beta=0.05), {"input_ids": _ids()})["attn_entropy_norm"][0]
    hi = probe(_model(beta=4.0), {"input_ids": _ids()})["attn_entropy_norm"][0]
    assert lo > 0.95 > hi


def test_classify_thresholds():
    mon = CollapseMonitor(_ids(), rank_threshold=0.9, entropy_threshold=0.1)
    assert mon.classify({"cosine": [0.2, 0.95], "attn_entropy_norm": [0.5, 0.6]}) == {
        "rank_collapse": True, "entropy_collapse": False}
    assert mon.classify({"cosine": [0.99, 0.5], "attn_entropy_norm": [0.05, 0.6]}) == {
        "rank_collapse": False, "entropy_collapse": True}
    assert mon.classify({"cosine": [None], "attn_entropy_norm": [None]}) == {
        "rank_collapse": False, "entropy_collapse": False}
    with pytest.raises(ValueError):
        CollapseMonitor(_ids(), rank_threshold=0.0)


def test_warns_once_on_onset_and_again_after_clearing():
    model = _model(beta=4.0)
    mon = CollapseMonitor(_ids(), every=1, entropy_threshold=0.99)  # forces "entropy collapse"
    with pytest.warns(CollapseWarning, match="entropy collapse at step 1"):
        mon.check(model, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mon.check(model, 2)  # still collapsed: no new warning
    mon.entropy_threshold = 0.0
    mon.check(model, 3)  # cleared
    mon.entropy_threshold = 0.99
    with pytest.warns(CollapseWarning):
        mon.check(model, 4)
    assert [h["step"] for h in mon.history] == [1, 2, 3, 4]
    assert mon.last["entropy_collapse"] is True


def test_is_a_huggingface_trainer_callback_on_an_hf_model():
    from transformers import BertConfig, BertModel, TrainerControl, TrainerState

    mon = CollapseMonitor({"input_ids": _ids(), "attention_mask": torch.ones(2, T, dtype=torch.long)}, every=2)
    assert isinstance(mon, transformers.TrainerCallback)
    conf = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=32, max_position_embeddings=T, attn_implementation="eager")
    torch.manual_seed(0)
    hf = BertModel(conf)
    state, control = TrainerState(), TrainerControl()
    for step in (1, 2):
        state.global_step = step
        assert mon.on_step_end(None, state, control, model=hf) is control
    assert [h["step"] for h in mon.history] == [2]
    state.global_step = 3
    mon.on_evaluate(None, state, control, model=hf, metrics={})
    rec = mon.last
    assert rec["step"] == 3 and len(rec["cosine"]) == 2 and len(rec["attn_entropy_norm"]) == 2
    assert all(e is not None and 0 < e <= 1 for e in rec["attn_entropy_norm"])


def test_attaches_to_a_real_huggingface_trainer(tmp_path):
    """End to end: ``transformers.Trainer(callbacks=[CollapseMonitor(...)])`` on a tiny BertForMaskedLM records
    per-layer cosine and entropy at the steps it was asked to, while the Trainer trains as usual."""
    pytest.importorskip("accelerate")
    from transformers import BertConfig, BertForMaskedLM, Trainer, TrainingArguments

    conf = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=32, max_position_embeddings=T, attn_implementation="eager")
    torch.manual_seed(0)
    model = BertForMaskedLM(conf)
    ids = torch.randint(0, 40, (16, T), generator=torch.Generator().manual_seed(1))
    rows = [{"input_ids": r, "labels": r.clone()} for r in ids]
    mon = CollapseMonitor({"input_ids": _ids()}, every=2)
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=4, per_device_train_batch_size=4,
                             learning_rate=1e-3, report_to=[], use_cpu=True, save_strategy="no",
                             logging_strategy="no", disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=rows, callbacks=[mon])
    before = [p.detach().clone() for p in model.parameters()]
    out = trainer.train()
    assert out.global_step == 4
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))  # it trained
    assert [h["step"] for h in mon.history] == [2, 4]
    for h in mon.history:
        assert len(h["cosine"]) == 2 and all(-1 <= c <= 1 for c in h["cosine"])
        assert all(0 < e <= 1 for e in h["attn_entropy_norm"])
    assert model.training  # the monitor's probe restores train mode


def test_collapse_message_reaches_stderr_once():
    """Regression: each CollapseWarning was printed twice (logging's last-resort handler and the warning).

    Run in a fresh interpreter so that pytest's own warning capture does not hide what a user sees."""
    import subprocess
    import sys

    code = (
        "import torch; torch.manual_seed(0)\n"
        "from sigprop.monitor import CollapseMonitor\n"
        "from sigprop.nn.heads import LanguageModel\n"
        "from sigprop.spec import Spec\n"
        "m = LanguageModel.from_spec(Spec(depth=2, beta=4.0, width=32, seq_len=16), vocab_size=50, seed=0)\n"
        "ids = torch.randint(0, 50, (2, 16))\n"
        "CollapseMonitor(ids, every=1, entropy_threshold=0.99).check(m, 1)\n"
        "CollapseMonitor(ids, every=1, entropy_threshold=0.99, warn=False).check(m, 2)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("entropy collapse at step 1") == 1, r.stderr
    assert r.stderr.count("entropy collapse at step 2") == 1, r.stderr
