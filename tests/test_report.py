"""One report for Python and CLI (sigprop.diagram.report), one-point axes, causal labelling, margin
verdicts, and the 0/0 cosine convention."""

import json

import numpy as np
import pytest

from sigprop import diagram as D
from sigprop.cli import main
from sigprop.spec import Spec
from sigprop.theory import blocks
from sigprop.theory.propagate import propagate

BETAS = ("0.05", "4", "40")
ALPHAS = ("0", "3", "40")


def run(capsys, *args):
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_recommendation_equals_python_report(capsys, tmp_path):
    spec = Spec(depth=60, norm="post", attention="softmax", activation="gelu", beta=1.0, alpha_sa=1.5, seq_len=512)
    rep = D.report(spec, np.linspace(0.05, 4, 40), np.linspace(0, 3, 40))
    assert "grad_vanishing" in rep.diagram.overlays
    rc, out, err = run(capsys, "diagram", "--depth", "60", "--activation", "gelu", "--alpha-sa", "1.5",
                       "--beta-range", *BETAS, "--alpha-range", *ALPHAS, "--out", str(tmp_path), "--format", "json")
    assert rc == 0, err
    cli = json.loads(out)
    assert cli["recommended"] == pytest.approx(rep.to_dict()["recommended"])
    assert cli["alpha_c"] == pytest.approx(rep.alpha_c)
    assert set(cli) == set(json.loads(rep.to_json()))
    # the recommendation is not inside the vanishing-gradient region
    r = rep.recommended
    j = int(np.argmin(np.abs(rep.diagram.x_values - r.x)))
    i = int(np.argmin(np.abs(rep.diagram.y_values - r.y)))
    assert not rep.diagram.overlays["grad_vanishing"][i, j]


@pytest.mark.parametrize("opt", ["--beta-range", "--alpha-range"])
def test_one_point_axis_clear_error_no_files(capsys, tmp_path, opt):
    out_dir = tmp_path / "o"
    rc, out, err = run(capsys, "diagram", "--asymptotic", opt, "0", "1", "1", "--out", str(out_dir))
    assert rc == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and opt in lines[0], err
    assert "Traceback" not in out + err
    assert not (out_dir / "diagram.json").exists() and not (out_dir / "diagram.png").exists()


def test_report_rejects_one_point_grid():
    with pytest.raises(ValueError, match="beta_grid"):
        D.report(Spec(depth=4), [1.0], np.linspace(0, 3, 5))


def test_failed_plot_leaves_no_json(capsys, tmp_path, monkeypatch):
    import sigprop.plot as P

    def boom(*a, **k):
        raise ValueError("plot failed")

    monkeypatch.setattr(P, "plot_diagram", boom)
    rc, out, err = run(capsys, "diagram", "--asymptotic", "--depth", "4", "--beta-range", "0.1", "3", "6",
                       "--alpha-range", "0", "3", "6", "--out", str(tmp_path))
    assert rc == 2
    assert not (tmp_path / "diagram.json").exists() and not (tmp_path / "diagram.png").exists()


def test_causal_in_summary_and_title():
    import matplotlib

    matplotlib.use("Agg")
    from sigprop.plot import plot_diagram

    rep = D.report(Spec(depth=4, causal=True), np.linspace(0.1, 3, 6), np.linspace(0, 3, 6))
    assert "causal" in rep.summary
    ax = plot_diagram(rep.diagram)
    assert "causal" in ax.get_title()
    rep2 = D.report(Spec(depth=4), np.linspace(0.1, 3, 6), np.linspace(0, 3, 6))
    assert "causal" not in rep2.summary


def test_margin_constants_documented():
    assert D.RHO_MARGIN == 0.05 and D.BETA_MARGIN == 0.10 and D.ALPHA_MARGIN == 0.10


def test_propagate_warns_vanishing_gradient_and_alpha_edge(capsys):
    rc, out, err = run(capsys, "propagate", "--depth", "60", "--beta", "0.5", "--alpha-sa", "1.3")
    assert rc == 0, err
    text = " ".join(out.split())
    assert "AT RISK" in text
    assert "vanishing-gradient region" in text
    assert "rank-collapse edge" in text


def test_pre_ln_default_near_alpha_c_not_plain_trainable():
    rep = D.report(Spec(depth=60, norm="pre"), np.linspace(0.05, 4, 30), np.linspace(0, 3, 30))
    assert rep.region == "trainable"
    assert any("rank-collapse edge" in w for w in rep.verdict.warnings)
    assert "AT RISK" in rep.summary
    assert "distance from the recommended point" in rep.summary


def test_safe_point_has_no_warnings():
    v = D.verdict(Spec(depth=12, beta=1.2, alpha_sa=2.0))
    assert v.region == "trainable" and v.warnings == ()


def test_near_entropy_collapse_warning():
    # β just below β_c(ρ₀ = 0.03) = 1.436
    v = D.verdict(Spec(depth=12, beta=1.35, alpha_sa=2.0), finite_T=False)
    assert any("near entropy collapse" in w for w in v.warnings)


def test_zero_over_zero_cosine_is_continuous():
    kw = dict(depth=1, beta=1, rho0=0, alpha_sa=0)
    a = propagate(Spec(sigma_b2=0, **kw), finite_T=False).rho[1]
    b = propagate(Spec(sigma_b2=1e-300, **kw), finite_T=False).rho[1]
    assert a == pytest.approx(b) == pytest.approx(1.0)
    assert float(blocks.cosine(0.0, 0.0)) == 1.0
    assert float(blocks.layernorm(0.0, 0.0)[1]) == 1.0
    assert float(blocks.cosine(0.2, 0.4)) == 0.5
