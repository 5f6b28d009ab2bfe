"""Training figures (sigprop.experiments.training) at tiny sizes, and the slow full-size checks."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tokenizers")
pytest.importorskip("transformers")

import sigprop.experiments.training as tr  # noqa: E402
from sigprop.experiments.reproduce import REGISTRY, reproduce  # noqa: E402

TINY3 = {"width": 32, "seq_len": 16, "steps": 2, "batch_size": 4, "eval_every": 1, "eval_rows": 4,
         "corpus": "synthetic", "n_stories": 60, "vocab_size": 300, "workers": 1,
         "fig3_lrs": (5e-4, 3e-3), "fig8_lrs": (3e-3, 5e-4, 1e-4)}


@pytest.fixture()
def tiny(monkeypatch, tmp_path):
    monkeypatch.setenv("SIGPROP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(tr.SIZES, "fig3", {"default": dict(TINY3), "full": dict(TINY3)})
    monkeypatch.setattr(tr, "FIG3_BETAS", (0.5, 3.0))
    monkeypatch.setattr(tr, "_fig3_runs", _two_betas(tr._fig3_runs))
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path
    torch.set_num_threads(old)


def _two_betas(fn):
    def wrapped(lrs, full, progress, betas=None, cache=None):
        return fn(lrs, full, progress, betas=(0.5, 3.0), cache=cache)

    return wrapped


def test_registry_has_training_figures():
    for name in ("fig1e", "fig3ab", "fig6", "fig8", "training"):
        assert name in REGISTRY


def test_fig3ab_tiny_writes_png_json_with_claims(tiny):
    out = tiny / "out"
    p = reproduce("fig3ab", out, progress=False)
    assert (out / "fig3ab.png").stat().st_size > 1000
    d = json.loads((out / "fig3ab.json").read_text())
    assert d["figure"] == "fig3ab" and len(d["runs"]) == 2 and d == json.loads(json.dumps(p))
    assert d["claims"] and all({"claim", "held"} <= set(c) for c in d["claims"])
    for r in d["runs"]:
        for k in ("beta", "rho_layer0", "entropy_step0", "entropy_step0_theory_finite_T", "final_test_loss",
                  "steps", "entropy", "test_loss"):
            assert k in r
    # step-0 entropy: measured vs finite-T REM theory at the measured layer-0 cosine (T = 16, d = 32, 8 rows)
    step0 = d["claims"][0]
    assert "step-0" in step0["claim"]
    assert step0["max_error"] <= 0.05, step0


@pytest.mark.slow
def test_learnability_cpu_default(tmp_path):
    """Issue acceptance (about 4–5 minutes on 2 cores): the 2-layer width-128 twin at the recommended init
    escapes the unigram plateau within 10 minutes and frozen uniform attention ends ≥ 0.2 nats worse.
    Measured once (docs/training.md): escape at step 200 (≈ 46 s), final 2.88 vs frozen 3.91, unigram 4.79."""
    res = tr.learnability(tmp_path)
    assert res["escaped_within_10_min"], res["trainable"]
    assert res["frozen_minus_trainable"] >= 0.2, res
    assert res["passed"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fig3ab", "fig8", "fig1e", "fig6"])
def test_training_figure_cpu_default(tmp_path, name):
    """Each training figure at its CPU default (5–15 minutes each on 2 cores). Checked: the claims that held
    when measured at this size (docs/training.md), so a regression in the trainer, the init or the theory
    labels shows up here. The claims that did not hold at CPU scale (dynamic entropy collapse at T = 64) are
    reported in the JSON, not asserted."""
    p = reproduce(name, tmp_path, progress=False)
    assert (tmp_path / f"{name}.png").exists() and p["claims"]
    assert p["wall_s"] > 0
    claims = {c["claim"]: c for c in p["claims"]}

    def claim(start):
        return next(c for k, c in claims.items() if k.startswith(start))

    if name in ("fig3ab", "fig8"):
        for c in p["claims"]:  # step-0 entropy within 0.05 of the finite-T theory, at every learning rate
            if "step-0 attention entropy" in c["claim"]:
                assert c["held"] and c["max_error"] <= 0.05, c
        for by in p["by_lr"].values():  # entropy and test-loss curves through training at every lr
            assert len(by["runs"]) == 7 and all(len(r["entropy"]) == len(r["test_loss"]) > 2 for r in by["runs"])
    if name == "fig3ab":
        # at lr 3e-3 the CPU-size model shows the paper's phenomenon (measured: β ≥ 3 entropy 0.094 and 0.049 at
        # the end, loss gap 0.75 nats); at 5e-4 it does not, and that is reported, not asserted
        assert claim("[lr 0.003] large β (≥ 3): attention entropy collapses")["held"], p["claims"]
        assert claim("[lr 0.003] large β learns worse")["held"], p["claims"]
    if name == "fig8":
        assert {"0.0005", "0.0001"} <= set(p["by_lr"])  # the two learning rates
        pair = [c for c in p["claims"] if c.get("lr_high") == 3e-3 and c.get("lr_low") == 5e-4]
        assert len(pair) == 2 and all(c["held"] for c in pair), pair  # 3e-3 → 5e-4 mitigates (premises met)
    if name == "fig1e":
        assert claim("the trainable (recommended) init reaches the lowest")["held"], p["claims"]
        assert claim("the trainable init escapes")["held"], p["claims"]
    if name == "fig6":
        assert claim("theory: vanilla post-LN rank-collapses")["held"], p["claims"]
        assert claim("centred (gain-controlled) attention trains to a lower")["held"], p["claims"]


def test_fig8_tiny_reuses_fig3ab_and_needs_its_premises(tiny, monkeypatch):
    """fig8 reuses the runs fig3ab left in OUT/runs (lr 5e-4 and 3e-3) and trains only lr 1e-4; its
    comparative claims (one pair per step down in lr) cannot hold vacuously: with 2 training steps nothing
    collapses or learns, so every premise fails → held false, with a note."""
    out = tiny / "out"
    p3 = reproduce("fig3ab", out, progress=False)
    assert set(p3["by_lr"]) == {"0.0005", "0.003"} and p3["settings"]["lr"] == pytest.approx(5e-4)
    assert any(c["claim"].startswith("[lr 0.003] step-0") for c in p3["claims"])
    calls = []
    real_job = tr._job
    monkeypatch.setattr(tr, "_job", lambda *a, **k: calls.append(a[1]["lr"]) or real_job(*a, **k))
    p = reproduce("fig8", out, progress=False)
    assert calls == [1e-4, 1e-4]  # two β at the one new lr
    assert set(p["by_lr"]) == {"0.003", "0.0005", "0.0001"} and p["settings"]["lr"] == pytest.approx(1e-4)
    assert p["by_lr"]["0.0005"]["runs"] == p3["by_lr"]["0.0005"]["runs"]
    mit = [c for c in p["claims"] if c["claim"].startswith("lower lr partially mitigates")]
    pen = [c for c in p["claims"] if c["claim"].startswith("lower lr shrinks")]
    assert [(c["lr_high"], c["lr_low"]) for c in mit] == [(3e-3, 5e-4), (5e-4, 1e-4)] == \
        [(c["lr_high"], c["lr_low"]) for c in pen]
    for c in mit:
        assert c["premise_collapse_at_high_lr"] is False and c["held"] is False and c["note"]
    for c in pen:
        assert c["premise_low_lr_escaped"] is False and c["held"] is False and c["note"]
    assert json.loads((out / "fig8.json").read_text())["wall_s"] == p["wall_s"] > 0


def test_interrupted_figure_resumes_from_finished_runs(tiny, monkeypatch):
    """Every finished run is kept in OUT/runs (atomically, fingerprinted): rerunning a figure retrains nothing
    that finished and gives the same payload; a changed training setting is retrained."""
    out = tiny / "out"
    first = reproduce("fig3ab", out, progress=False)
    files = sorted((out / "runs").rglob("*.json"))
    assert len(files) == 4  # 2 β × 2 learning rates
    calls = []
    real_job = tr._job

    def counting_job(*a, **k):
        calls.append(a[2])
        return real_job(*a, **k)

    monkeypatch.setattr(tr, "_job", counting_job)
    again = reproduce("fig3ab", out, progress=False)
    assert calls == []  # both runs came from OUT/runs
    assert again["runs"] == first["runs"] and again["claims"] == first["claims"]

    # a run killed mid-way leaves no file (writes are atomic): delete one → only that one is retrained
    files[0].unlink()
    reproduce("fig3ab", out, progress=False)
    assert len(calls) == 1
    # a different setting (more steps) does not reuse the old files
    monkeypatch.setitem(tr.SIZES["fig3"], "default", {**tr.SIZES["fig3"]["default"], "steps": 3})
    reproduce("fig3ab", out, progress=False)
    assert len(calls) == 1 + 4
