"""Figure reproduction (sigprop.experiments.reproduce) and the ``sigprop reproduce`` CLI.

Fast tests shrink the figure sizes through ``reproduce.SIZES``; the paper sizes are ``@pytest.mark.slow``.

Single-layer tolerance (fast, d=128, T=256): 0.05. At finite width the variance of a row's logits is a
quadratic form in the random W_Q, W_K with relative fluctuation ≈ sqrt(2/d) (0.125 at d=128), and with
ρ > 0 all rows share the query's common component, so that fluctuation does not average over rows; Y² is
convex in the logit scale near β_c, which raises the measured Y² and lowers p'/q' there (measured max error
0.043 at ρ=0.5, β=1.5 for d=128; the paper's d=512, T=1024 case is within ~0.012, checked by the slow test).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sigprop.experiments import reproduce as rp  # noqa: E402


def test_registry_names_and_extensibility():
    for name in ("fig1d", "fig2", "fig3c", "fig4", "fig5", "fig7", "fig12"):
        assert name in rp.REGISTRY
    calls = []

    @rp.register("figtest", help="dummy")
    def _dummy(out, full, seeds, progress):
        calls.append((full, seeds))
        return {"claims": []}

    try:
        got = rp.reproduce("figtest", "/tmp/sigprop-figtest", seeds=2, progress=False)
        assert got["claims"] == [] and set(got) == {"claims", "wall_s"}  # reproduce() adds the wall time
        assert calls == [(False, 2)]
    finally:
        rp.REGISTRY.pop("figtest")
        rp.HELP.pop("figtest")


def test_unknown_and_bad_arguments():
    with pytest.raises(ValueError, match="unknown figure 'nope'.*fig2"):
        rp.reproduce("nope", progress=False)
    with pytest.raises(ValueError, match="seeds"):
        rp.reproduce("fig2", seeds=0, progress=False)


def test_single_layer_finite_T_beats_asymptotic():
    res = rp.fig2_grid([0.2, 0.5], rp.FIG2_BETAS, width=128, seq_len=256, seeds=2)
    assert res["abs_error_finite"].max() <= 0.05, np.round(res["abs_error_finite"], 3)
    assert res["abs_error_asymptotic"].max() > 0.3  # T=∞ says ρ'=1 below β_c; measured 0.52 at ρ=0.2, β=1.5
    # the transition is smeared: below β_c the measured cosine is already well below 1
    assert res["rho_gram"][0, 2] < 0.7


def test_fig4_centred_below_vanilla_theory_and_simulation(monkeypatch, tmp_path):
    monkeypatch.setitem(rp.SIZES, "fig4", {"default": (64, 64, 12), "full": (64, 64, 12)})
    out = rp.reproduce("fig4", tmp_path, seeds=1, progress=False)
    claims = {c["claim"]: c for c in out["claims"]}
    table = next(c for k, c in claims.items() if k.startswith("T=∞ theory reproduces"))
    assert table["held"], table["max_abs_diff"]
    for n in ("post", "pre"):
        c = next(c for k, c in claims.items() if k.startswith(f"{n}-LN: centred"))
        assert c["held"], c
        assert c["measured_centred"] < c["measured_vanilla"] - 0.2
    assert (tmp_path / "fig4.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "fig4.json").read_text())
    assert saved["figure"] == "fig4"
    assert 0 < saved["wall_s"] == out["wall_s"] < 600  # wall time recorded in the JSON written to disk


def test_fig5_small_monte_carlo(monkeypatch, tmp_path):
    monkeypatch.setitem(rp.SIZES, "fig5", {"default": (2000, 300), "full": (2000, 300)})
    out = rp.reproduce("fig5", tmp_path, progress=False)
    held = {c["claim"][:30]: c["held"] for c in out["claims"]}
    assert all(held.values()), out["claims"]
    i2 = int(np.argmin(np.abs(np.asarray(out["betas"]) - math.sqrt(2))))
    assert 0.2 < out["monte_carlo"][i2] < 0.3  # the paper, arXiv 2505.24333: 0.224 at T=2048


def test_cli_reproduce_fig4_and_unknown(monkeypatch, tmp_path, capsys):
    from sigprop.cli import main

    monkeypatch.setitem(rp.SIZES, "fig4", {"default": (32, 32, 6), "full": (32, 32, 6)})
    assert main(["reproduce", "fig4", "--out", str(tmp_path), "--seeds", "1"]) == 0
    assert (tmp_path / "fig4.json").exists() and (tmp_path / "fig4.png").exists()
    capsys.readouterr()
    assert main(["reproduce", "figXX", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown figure") and "\n" not in err


# ----------------------------------------------------------------------------------------------- slow
@pytest.mark.slow
def test_single_layer_paper_size():
    """d=512, T=1024 on the Fig 2 grid: finite-T theory within 0.03 of p'/q' everywhere; T=∞ error reported."""
    res = rp.fig2_grid([0.2, 0.5], rp.FIG2_BETAS, width=512, seq_len=1024, seeds=3)
    assert res["abs_error_finite"].max() <= 0.03, np.round(res["abs_error_finite"], 3)
    assert res["abs_error_asymptotic"].max() > 0.3


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fig1d", "fig2", "fig4", "fig5", "fig7", "fig12"])
def test_default_figures_run(name, tmp_path):
    out = rp.reproduce(name, tmp_path, progress=False)
    assert out["claims"] and (tmp_path / f"{name}.png").exists()
