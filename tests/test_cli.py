"""The command line: JSON outputs vs the paper's numbers and the API, diagram files, one-line errors (exit 2)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from sigprop.cli import main
from sigprop.spec import Spec
from sigprop.theory.propagate import propagate


def run(capsys, *args):
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def test_rem_json_paper_values(capsys):
    rc, out, err = run(capsys, "rem", "--beta", "2", "--rho", "0", "--asymptotic", "--format", "json")
    assert rc == 0, err
    d = json.loads(out)
    # the paper, arXiv 2505.24333, β = 2 row
    assert d["y2"] == pytest.approx(0.29289, abs=1e-5)
    assert d["y3"] == pytest.approx(0.18934, abs=1e-5)
    assert d["y4"] == pytest.approx(0.14471, abs=1e-5)
    assert d["y2_squared_mean"] == pytest.approx(0.15482, abs=1e-5)
    assert d["trace_j2"] == pytest.approx(0.06904, abs=1e-5)
    assert d["free_entropy"] == pytest.approx(2.8284, abs=1e-4)
    assert d["beta_c"] == pytest.approx(1.41421, abs=1e-5)
    assert d["entropy"] == 0.0 and d["overlap"] == 0.0
    assert d["finite_T"] is False
    assert "condensed" in d["phase"]


def test_rem_json_below_beta_c(capsys):
    rc, out, _ = run(capsys, "rem", "--beta", "1", "--rho", "0.5", "--asymptotic", "--format", "json")
    assert rc == 0
    d = json.loads(out)
    assert d["y2"] == 0.0 and d["beta_c"] == pytest.approx(2.0)
    assert d["free_entropy"] == pytest.approx(1 + 0.5 / 2)
    assert d["entropy"] == pytest.approx(1 - 1 / 4)


def test_rem_text(capsys):
    rc, out, _ = run(capsys, "rem", "--beta", "3", "--asymptotic")
    assert rc == 0
    assert "0.528595" in out  # Y²(β=3) = 1 − √2/3


def test_propagate_json_matches_api(capsys):
    rc, out, err = run(capsys, "propagate", "--depth", "50", "--beta", "3", "--rho0", "0.03", "--asymptotic",
                       "--format", "json")
    assert rc == 0, err
    d = json.loads(out)
    assert {"layer", "rho", "q", "y2"} <= set(d)
    assert d["layer"] == list(range(51))
    pr = propagate(Spec(depth=50, beta=3.0, rho0=0.03), finite_T=False)
    np.testing.assert_allclose(d["rho"], pr.rho, atol=1e-12)
    np.testing.assert_allclose(d["q"], pr.q, atol=1e-12)
    np.testing.assert_allclose(d["y2"][1:], pr.y2[1:], atol=1e-12)
    # the paper, arXiv 2505.24333, β = 3
    assert d["rho"][30] == pytest.approx(0.693, abs=5e-4)
    assert d["region"] in ("trainable", "rank_collapse", "entropy_collapse")
    assert d["spec"]["beta"] == 3.0


def test_propagate_text(capsys):
    rc, out, _ = run(capsys, "propagate", "--depth", "5", "--beta", "0.5", "--asymptotic")
    assert rc == 0
    assert "region" in out


def test_diagram_writes_files(capsys, tmp_path):
    out_dir = tmp_path / "dia"
    rc, out, err = run(capsys, "diagram", "--asymptotic", "--out", str(out_dir), "--beta-range", "0.1", "3", "30",
                       "--alpha-range", "0", "3", "30", "--format", "json")
    assert rc == 0, err
    png = out_dir / "diagram.png"
    assert png.exists() and png.stat().st_size > 1000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    d = json.loads((out_dir / "diagram.json").read_text())
    assert json.loads(out) == d  # stdout is the same payload
    assert d["x"]["name"] == "beta" and len(d["x"]["values"]) == 30
    assert d["y"]["name"] == "alpha_sa" and len(d["y"]["values"]) == 30
    labels = np.array(d["labels"])
    assert labels.shape == (30, 30)
    assert set(np.unique(labels)) <= {"trainable", "rank_collapse", "entropy_collapse"}
    assert isinstance(d["boundaries"], list) and d["boundaries"]
    for b in d["boundaries"]:
        assert len(b["between"]) == 2 and b["points"]
    assert d["recommended"] is not None
    rb, ra = d["recommended"]["beta"], d["recommended"]["alpha_sa"]
    i = int(np.argmin(np.abs(np.array(d["y"]["values"]) - ra)))
    j = int(np.argmin(np.abs(np.array(d["x"]["values"]) - rb)))
    assert labels[i, j] == "trainable"
    # default depth is 12: α_c(L=12) ≈ 0.47 (the paper, arXiv 2505.24333)
    assert d["alpha_c"] == pytest.approx(0.47, abs=5e-3)
    assert isinstance(d["summary"], str) and "β_c" in d["summary"]
    assert d["rule"]["finite_T"] is False


BAD = [
    ["rem", "--beta", "-1", "--asymptotic"],
    ["rem", "--beta", "1", "--rho", "1.5", "--asymptotic"],
    ["propagate", "--beta", "-1", "--asymptotic"],
    ["propagate", "--norm", "side"],
    ["propagate", "--depth", "x"],
    ["propagate", "--depth", "0", "--asymptotic"],
    ["diagram", "--asymptotic", "--beta-range", "3", "1", "5"],
    ["diagram", "--asymptotic", "--alpha-range", "0", "3", "0"],
    ["diagram", "--asymptotic", "--eps", "2"],
    ["frobnicate"],
    ["rem"],
]


@pytest.mark.parametrize("args", BAD, ids=[" ".join(a) for a in BAD])
def test_bad_arguments_one_line_exit_2(capsys, tmp_path, args):
    if args[0] == "diagram":
        args = [*args, "--out", str(tmp_path / "never")]
    rc, out, err = run(capsys, *args)
    assert rc == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error:")
    assert "Traceback" not in err + out
    if args[0] == "diagram":
        assert not (tmp_path / "never" / "diagram.json").exists()


def test_error_message_names_the_problem(capsys):
    _, _, err = run(capsys, "propagate", "--norm", "side")
    assert "--norm" in err
    _, _, err = run(capsys, "rem", "--beta", "-1", "--asymptotic")
    assert "beta" in err
    _, _, err = run(capsys, "diagram", "--asymptotic", "--beta-range", "3", "1", "5", "--out", "/nonexistent/x")
    assert "--beta-range" in err


@pytest.mark.parametrize("args", [["propagate", "--norm", "side"]])
def test_subprocess_exit_code_and_stderr(args):
    p = subprocess.run([sys.executable, "-m", "sigprop.cli", *args], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, p.stderr
    assert "Traceback" not in p.stderr


def test_subprocess_rem_json():
    p = subprocess.run([sys.executable, "-m", "sigprop.cli", "rem", "--beta", "3", "--rho", "0.2", "--asymptotic",
                        "--format", "json"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["y2"] == pytest.approx(1 - np.sqrt(2 / 0.8) / 3, abs=1e-12)
