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
         "corpus": "synthetic", "n_stories": 60, "vocab_size": 300, "workers": 1}


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
    def wrapped(lr, full, progress, betas=None):
        return fn(lr, full, progress, betas=(0.5, 3.0))

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
    p = reproduce(name, tmp_path, progress=False)
    assert (tmp_path / f"{name}.png").exists() and p["claims"]
    if name == "fig3ab":
        assert p["claims"][0]["held"], p["claims"][0]  # step-0 entropy within 0.05 of the finite-T theory
