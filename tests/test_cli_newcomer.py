"""Regressions from the new-user trial (issue: the first command fails on a fresh machine, and others)."""

import json
import os
import stat
import subprocess
import sys

import pytest

from sigprop.cli import main


def run(capsys, *args):
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def test_version(capsys):
    rc, out, _ = run(capsys, "--version")
    assert rc == 0
    assert out.startswith("sigprop ") and len(out.split()) == 2


def test_bare_command_prints_help_once():
    r = subprocess.run([sys.executable, "-m", "sigprop.cli"], capture_output=True, text=True, timeout=120)
    text = r.stdout + r.stderr
    assert r.returncode == 0
    assert text.count("Usage:") == 1 and "diagram" in text


def test_core_dependencies_declared():
    """Every third-party module imported by sigprop's core and CLI modules is a declared core dependency."""
    import ast
    import pathlib

    import tomllib

    root = pathlib.Path(__file__).resolve().parents[1]
    deps = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    declared = {d.split(">")[0].split("=")[0].split("[")[0].strip().lower() for d in deps}
    core = [root / "sigprop" / "cli.py", root / "sigprop" / "spec.py", root / "sigprop" / "diagram.py",
            *sorted((root / "sigprop" / "commands").glob("*.py")), *sorted((root / "sigprop" / "theory").glob("*.py"))]
    stdlib = set(sys.stdlib_module_names)
    found = set()
    for f in core:
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            # module-level imports only: those run on `sigprop --help` with a core install
            if node.col_offset == 0:
                found |= {n.split(".")[0] for n in names}
    third = {m for m in found if m not in stdlib and m not in ("sigprop", "__future__")}
    assert third <= declared, f"imported at module level but not declared core dependencies: {third - declared}"


@pytest.mark.parametrize("args", [["diagram", "--out", "/proc/sigprop-x"], ["train", "--steps", "5", "--out", "/proc/x"],
                                  ["diagram", "--out=/proc/sigprop-x"]])
def test_bad_out_folder_exits_2_one_line(capsys, args):
    rc, out, err = run(capsys, *args)
    assert rc == 2
    assert err.count("\n") == 1 and "--out" in err and "Traceback" not in err


def test_out_is_a_file(capsys, tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    rc, _, err = run(capsys, "diagram", "--out", str(f))
    assert rc == 2 and "is a file" in err and err.count("\n") == 1


def test_qk_std_and_beta_together_is_an_error(capsys):
    rc, _, err = run(capsys, "propagate", "--qk-std", "0.02", "--beta", "2", "--format", "json")
    assert rc == 2 and "--qk-std" in err and "--beta" in err


def test_qk_std_alone_still_converts(capsys):
    rc, out, err = run(capsys, "propagate", "--qk-std", "0.02", "--depth", "2", "--format", "json")
    assert rc == 0, err
    d = json.loads(out)
    assert d["spec"]["beta"] == pytest.approx(0.02**2 * 512 / (__import__("math").log(512)) ** 0.5, rel=1e-6)


def test_sigma_bv2_option_reaches_spec():
    from sigprop.commands.common import build_spec

    kw = dict(depth=2, norm="post", attention="softmax", activation="relu", beta=1.0, qk_std=None, alpha_sa=1.0,
              alpha_mlp=1.0, sigma_w2=0.2, sigma_v2=0.2, sigma_b2=4e-4, seq_len=64, rho0=0.03, causal=False)
    assert build_spec(**kw, sigma_bv2=0.0).bias_v2 == 0.0
    assert build_spec(**kw).bias_v2 == 4e-4


def test_reproduce_fig3c_from_python(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    import numpy as np

    from sigprop.experiments import fig3c
    from sigprop.experiments.reproduce import reproduce

    monkeypatch.setitem(fig3c.FIG3C_CPU, "seq_lens", [64])
    monkeypatch.setitem(fig3c.FIG3C_CPU, "widths", [16])
    monkeypatch.setitem(fig3c.FIG3C_CPU, "betas", np.array([0.5, 2.0]))
    monkeypatch.setitem(fig3c.FIG3C_CPU, "seeds", 2)
    payload = reproduce("fig3c", tmp_path, progress=False)
    assert (tmp_path / "gradients.json").stat().st_size > 0
    assert {"collapse", "collapses", "summary"} <= set(payload)
    # the theory says the β=2 gradient exceeds the β=0.5 one (Result 2); the measurement agrees in sign
    s = sorted((r["beta"], r["grad_wq2"]) for r in payload["summary"] if r["layer"] == 1)
    assert s[-1][1] > s[0][1]


def test_gradients_y_label_says_what_is_plotted(capsys, tmp_path):
    rc, out, err = run(capsys, "gradients", "--beta-range", "0.5", "2", "3", "--seq-len", "64", "--width", "16",
                       "--out", str(tmp_path), "--format", "json")
    assert rc == 0, err
    label = json.loads(out)["y_label"]
    assert "d/T" in label and "measured" not in label
    from sigprop.experiments.fig3c import y_label

    assert y_label(True) != label and "measured" in y_label(True)


def test_validate_progress_and_plain_q_axis(tmp_path, capsys):
    pytest.importorskip("torch")
    from sigprop.spec import Spec
    from sigprop.validate import validate

    spec = Spec(depth=2, beta=0.5, seq_len=16, width=16, rho0=0.2)
    rep = validate(spec, seeds=2, progress=True)
    err = capsys.readouterr().err
    assert "validating" in err and "2/2" in err  # the one progress bar, left on screen when done
    fig = rep.figure()
    for ax in fig.axes:
        ax.figure.canvas.draw()
        assert ax.yaxis.get_major_formatter().get_offset() == ""
        lo, hi = ax.get_ylim()
        assert hi - lo > 0.01 * max(abs(lo + hi) / 2, 1e-12)


def test_causal_tables_ship_with_the_package(monkeypatch, tmp_path):
    """`sigprop diagram --causal` needs no first-use computation at the shipped T (it took 87 s silently)."""
    from sigprop.theory import finite
    from sigprop.theory.rows import causal_rows

    monkeypatch.setenv("SIGPROP_CACHE", str(tmp_path))
    finite.clear_cache()

    def boom(*a, **k):
        raise AssertionError("a table was computed instead of read from the package")

    monkeypatch.setattr(finite, "_overlap_point", boom)
    for T in (64, 512, 2048):
        n, _ = causal_rows(T)
        for nk in n:
            finite._overlap_table(float(nk)).nodes  # noqa: B018  (reads or computes)
    finite.clear_cache()


def test_long_propagation_shows_progress(capsys, monkeypatch):
    from sigprop.commands import theory
    from sigprop.spec import Spec
    from sigprop.theory.propagate import propagate

    calls = []
    propagate(Spec(depth=7), progress=lambda ell, L: calls.append((ell, L)))
    assert calls == [(i, 7) for i in range(1, 8)]
    monkeypatch.setattr(theory, "LONG_DEPTH", 5)
    rc, out, err = run(capsys, "propagate", "--depth", "6")
    assert rc == 0, err
    assert "propagating blocks" in err and "6/6" in err


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_written_files_get_the_umask_mode(tmp_path, umask, mode):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sigprop.io import write_atomic
    from sigprop.plot import savefig_atomic

    old = os.umask(umask)
    try:
        write_atomic(tmp_path / "a.json", "{}")
        write_atomic(tmp_path / "b.bin", b"\x00")
        fig = plt.figure()
        savefig_atomic(fig, tmp_path / "c.png")
        plt.close(fig)
    finally:
        os.umask(old)
    for name in ("a.json", "b.bin", "c.png"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.bin", "c.png"]  # no temp files left


def test_cli_outputs_are_group_readable(capsys, tmp_path):
    old = os.umask(0o022)
    try:
        rc, _, err = run(capsys, "diagram", "--beta-range", "0.1", "3", "6", "--alpha-range", "0", "2", "5",
                         "--out", str(tmp_path))
    finally:
        os.umask(old)
    assert rc == 0, err
    for name in ("diagram.png", "diagram.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644


def test_large_diagram_json_is_compact(capsys, tmp_path, monkeypatch):
    import numpy as np

    from sigprop import diagram as dg

    monkeypatch.setattr(dg, "INLINE_MAX_CELLS", 20)
    rc, _, err = run(capsys, "diagram", "--beta-range", "0.1", "3", "6", "--alpha-range", "0", "2", "5",
                     "--out", str(tmp_path))
    assert rc == 0, err
    d = json.loads((tmp_path / "diagram.json").read_text())
    z = np.load(tmp_path / "diagram.npz")
    assert d["labels"]["npz"] == "diagram.npz" and z["labels"].shape == (5, 6)
    assert set(np.unique(z["labels"]).tolist()) <= set(d["label_codes"].values())
    # the same grid, inline: identical labels
    monkeypatch.setattr(dg, "INLINE_MAX_CELLS", 10**9)
    rc, _, _ = run(capsys, "diagram", "--beta-range", "0.1", "3", "6", "--alpha-range", "0", "2", "5",
                   "--out", str(tmp_path / "inline"))
    inline = json.loads((tmp_path / "inline" / "diagram.json").read_text())
    names = np.vectorize({v: k for k, v in inline["label_codes"].items()}.get)(z["labels"])
    assert names.tolist() == inline["labels"]
    assert d["recommended"] == inline["recommended"]


def test_no_citations_of_an_internal_document():
    """Help texts, notes and docstrings cite the paper or the project's docs, never "digest §N"."""
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[1] / "sigprop"
    hits = [f"{p.name}:{i}" for p in root.rglob("*.py") for i, line in enumerate(p.read_text().splitlines(), 1)
            if re.search(r"digest\s*§", line)]
    assert not hits, hits
    theory = (root.parent / "docs" / "theory.md").read_text()
    cited = {m for p in root.rglob("*.py") for m in re.findall(r"docs/theory\.md §(\d+)", p.read_text())}
    assert all(f"§{n}" in theory for n in cited), cited


def test_readme_python_example_runs_and_matches_the_cli(capsys, tmp_path):
    """The README's Python block imports only the facade, runs as written, and recommends what the CLI does."""
    import contextlib
    import io
    import pathlib
    import re

    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    assert all(line.startswith(("import numpy", "from sigprop import")) for line in block.splitlines()
               if line.startswith(("import", "from")))
    ns: dict = {}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(block, ns)  # noqa: S102
    rec = ns["rep"].recommended
    rc, out, err = run(capsys, "diagram", "--depth", "60", "--activation", "gelu", "--alpha-sa", "1.5",
                       "--beta-range", "0.05", "4", "200", "--alpha-range", "0", "3", "200",
                       "--out", str(tmp_path), "--format", "json")
    assert rc == 0, err
    cli = json.loads(out)["recommended"]
    assert cli["beta"] == pytest.approx(rec.x) and cli["alpha_sa"] == pytest.approx(rec.y)
