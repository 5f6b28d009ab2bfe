"""The spec options of the command line: declared once (sigprop.commands.options), taken by every command that
builds a Spec, reaching the Spec, with Spec's (or the command's documented) defaults, and bad values refused
with exit code 2 and one line that names the option. Also: the library never imports the CLI."""

import ast
import dataclasses
import inspect
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from sigprop.cli import app, main
from sigprop.commands import options as O
from sigprop.spec import Spec

SPEC_COMMANDS = ("propagate", "diagram", "validate", "train", "sweep")
#: the option names of issue 12 (a contract: users and tests rely on them)
CONTRACT = ("--activation", "--sigma-w2-out", "--block", "--norm-type", "--rope-fraction", "--rope-theta",
            "--kv-heads", "--window", "--q0")


def run(capsys, *args):
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def _click_command(name):
    return typer.main.get_command(app).commands[name]


def _flags(name):
    return {f for p in _click_command(name).params for f in p.opts}


def test_every_spec_field_has_one_option():
    fields = {f.name for f in dataclasses.fields(Spec) if not f.name.startswith("_")}
    assert fields | {"qk_std"} == set(O.BY_NAME)
    flags = [f for o in O.OPTIONS for f in o.flags]
    assert len(flags) == len(set(flags))


@pytest.mark.parametrize("command", SPEC_COMMANDS)
def test_spec_commands_take_the_contract_options(command):
    flags = _flags(command)
    assert set(CONTRACT) <= flags, set(CONTRACT) - flags
    want = {o.flag for o in O.OPTIONS}
    if command == "sweep":  # the sweep's grid sets β and α_SA
        want -= {"--beta", "--qk-std", "--alpha-sa"}
    assert want <= flags, want - flags


def _defaults(command):
    return {p.name: p.default for p in _click_command(command).params}


def test_defaults_come_from_spec_and_the_documented_command_overrides():
    spec_defaults = {f.name: f.default for f in dataclasses.fields(Spec) if not f.name.startswith("_")}
    overrides = {"propagate": {}, "diagram": {}, "validate": {"seq_len": 256, "rho0": 0.2, "width": 256},
                 "train": {"depth": 2, "seq_len": 64, "width": 128},
                 "sweep": {"depth": 2, "seq_len": 64, "width": 128}}
    for command, over in overrides.items():
        got = _defaults(command)
        for name, default in spec_defaults.items():
            if name not in got:
                assert command == "sweep" and name in ("beta", "alpha_sa")
                continue
            want = over.get(name, default)
            assert getattr(got[name], "value", got[name]) == want, (command, name)


def test_propagate_without_options_is_the_default_spec(capsys):
    rc, out, err = run(capsys, "propagate", "--asymptotic", "--format", "json")
    assert rc == 0, err
    assert json.loads(out)["spec"] == Spec().to_dict()


NEW = [
    (["--activation", "swiglu"], {"activation": "swiglu"}),
    (["--activation", "GeGLU"], {"activation": "geglu"}),
    (["--sigma-w2-out", "0.7"], {"sigma_w2_out": 0.7}),
    (["--block", "parallel"], {"block": "parallel"}),
    (["--norm-type", "rmsnorm"], {"norm_type": "rmsnorm"}),
    (["--rope-fraction", "0.25", "--heads", "8", "--rope-theta", "500000"],
     {"rope_fraction": 0.25, "rope_theta": 5e5, "heads": 8}),
    (["--heads", "8", "--kv-heads", "2"], {"heads": 8, "kv_heads": 2}),
    (["--window", "64", "--causal"], {"window": 64, "causal": True}),
    (["--q0", "0.0008"], {"q0": 0.0008}),
    (["--width", "256", "--mlp-ratio", "4"], {"width": 256, "mlp_ratio": 4.0}),
]


@pytest.mark.parametrize("args, want", NEW, ids=[" ".join(a) for a, _ in NEW])
def test_new_options_reach_the_spec(capsys, args, want):
    rc, out, err = run(capsys, "propagate", "--depth", "2", "--asymptotic", "--format", "json", *args)
    assert rc == 0, err
    spec = json.loads(out)["spec"]
    for k, v in want.items():
        assert spec[k] == v, k
    # every other field keeps its default
    rest = {k: v for k, v in Spec(depth=2).to_dict().items() if k not in want}
    assert {k: spec[k] for k in rest} == rest


def test_build_spec_reads_every_option():
    values = {"activation": O.ActivationName("swiglu"), "block": O.Block("parallel"), "norm": O.Norm("pre"),
              "norm_type": O.NormType("rmsnorm"), "rope_fraction": 0.5, "heads": 4, "kv_heads": 2, "window": 9,
              "q0": 0.01, "sigma_w2_out": 2.0, "width": 64, "causal": True, "out": "ignored"}
    s = O.build_spec(**values)
    assert (s.activation, s.block, s.norm, s.norm_type, s.rope_fraction, s.n_kv_heads, s.window, s.q0, s.w2_out) == (
        "swiglu", "parallel", "pre", "rmsnorm", 0.5, 2, 9, 0.01, 2.0)
    assert s.gated and s.width == 64 and s.causal


def test_qk_std_uses_the_given_width(capsys):
    rc, out, err = run(capsys, "propagate", "--depth", "2", "--asymptotic", "--format", "json", "--qk-std", "0.02",
                       "--width", "256", "-T", "128")
    assert rc == 0, err
    assert json.loads(out)["spec"]["beta"] == pytest.approx(0.02**2 * 256 / math.sqrt(math.log(128)), rel=1e-12)


BAD = [
    (["--kv-heads", "3", "--heads", "4"], "--kv-heads"),
    (["--kv-heads", "0"], "--kv-heads"),
    (["--rope-fraction", "1.5"], "--rope-fraction"),
    (["--rope-fraction", "0.3", "--width", "64", "--heads", "2"], "--rope-fraction"),  # 0.3 × 32 = 9 dims: odd
    (["--rope-theta", "0.5"], "--rope-theta"),
    (["--window", "0"], "--window"),
    (["--q0", "0"], "--q0"),
    (["--sigma-w2-out", "-1"], "--sigma-w2-out"),
    (["--block", "diagonal"], "--block"),
    (["--norm-type", "batchnorm"], "--norm-type"),
    (["--activation", "swish"], "--activation"),
    (["--heads", "3"], "--heads"),
    (["--depth", "0"], "--depth"),
    (["--qk-std", "-0.02"], "--qk-std"),
]


@pytest.mark.parametrize("command", ["propagate", "diagram", "validate"])
@pytest.mark.parametrize("args, flag", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_values_exit_2_naming_the_option(capsys, tmp_path, command, args, flag):
    extra = ["--out", str(tmp_path / "o")] if command != "propagate" else []
    rc, out, err = run(capsys, command, *args, *extra)
    assert rc == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and flag in lines[0], err
    assert "Traceback" not in out + err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())  # nothing written


@pytest.mark.parametrize("flag, bad, allowed", [("--norm-type", "batchnorm", "rmsnorm"), ("--block", "diagonal", "parallel"),
                                                ("--activation", "swish", "swiglu")])
def test_bad_choice_names_the_choices_plainly(capsys, flag, bad, allowed):
    rc, _, err = run(capsys, "propagate", flag, bad)
    assert rc == 2
    assert f"'{bad}'" in err and allowed in err and "Value error" not in err, err


def test_bad_value_exit_2_in_standalone_mode():
    # typer's own runner (standalone mode, as `sigprop` would run without sigprop.cli.main)
    r = CliRunner().invoke(app, ["propagate", "--kv-heads", "5", "--heads", "8"])
    assert r.exit_code == 2 and "--kv-heads" in r.output


def test_subprocess_llama_like_options():
    args = ["propagate", "--depth", "2", "--asymptotic", "--format", "json", "--norm", "pre", "--norm-type", "rmsnorm",
            "--activation", "swiglu", "--rope-fraction", "1", "--heads", "8", "--kv-heads", "2", "--causal",
            "--q0", "0.02", "--sigma-w2-out", "0.1"]
    p = subprocess.run([sys.executable, "-m", "sigprop.cli", *args], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    spec = json.loads(p.stdout)["spec"]
    assert (spec["norm_type"], spec["activation"], spec["rope_fraction"], spec["kv_heads"], spec["q0"]) == (
        "rmsnorm", "swiglu", 1.0, 2, 0.02)
    bad = subprocess.run([sys.executable, "-m", "sigprop.cli", "propagate", "--window", "-3"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "--window" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_option_error_maps_library_names_to_flags():
    assert "'--qk-std'" in O.option_error(ValueError("std must be finite and > 0; got -1")).format_message()
    assert "'--sigma-bv2'" in O.option_error(ValueError("sigma_bv2 must be finite")).format_message()
    msg = O.option_error(ValueError("array fields do not broadcast together")).format_message()
    assert "array fields" in msg


def test_spec_options_decorator_contract():
    with pytest.raises(TypeError, match="not spec options"):
        O.spec_options(exclude=("nope",))
    with pytest.raises(TypeError, match="not spec options"):
        O.spec_options(seq_lenn=3)

    def clashing(depth: int = 1, spec: Spec = None) -> None: ...

    with pytest.raises(TypeError, match="depth"):
        O.spec_options()(clashing)

    @O.spec_options(exclude=("beta", "qk_std"), depth=3)
    def cmd(spec: Spec, flag: bool = False):
        return spec, flag

    params = inspect.signature(cmd).parameters
    assert "spec" not in params and "beta" not in params and params["depth"].default == 3
    spec, flag = cmd(**{n: p.default for n, p in params.items()})
    assert spec == Spec(depth=3) and flag is False


# --------------------------------------------------------------------------- layering


def _imports(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from (f"{node.module}.{a.name}" for a in node.names)


def test_library_never_imports_the_cli():
    root = Path(__file__).resolve().parents[1] / "sigprop"
    bad = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root).as_posix()
        if rel == "cli.py" or rel.startswith(("cli/", "commands/")):
            continue
        for name in _imports(path):
            if name in ("sigprop.cli", "sigprop.commands") or name.startswith(("sigprop.cli.", "sigprop.commands.")):
                bad.append(f"{rel}: {name}")
    assert not bad, bad


def test_every_command_module_is_registered():
    import sigprop.cli as cli

    registered = {m.__name__ for m in cli.COMMAND_MODULES}
    folder = Path(__file__).resolve().parents[1] / "sigprop" / "commands"
    for path in folder.glob("*.py"):
        if "\ndef register(" in path.read_text():
            assert f"sigprop.commands.{path.stem}" in registered, path.name


@pytest.mark.parametrize("command", SPEC_COMMANDS)
def test_help_lists_the_new_options(command):
    r = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    for flag in CONTRACT:
        assert flag in r.output, flag
