"""The training options of the command line: declared once (sigprop.commands.options.TRAIN_OPTIONS) and taken
by ``sigprop train`` and ``sigprop sweep`` through ``@train_options``, which hands the command a validated
``TrainConfig`` (no torch needed: the configuration is torch-free)."""

from __future__ import annotations

import dataclasses

import pytest
import typer
from typer.testing import CliRunner

from sigprop.commands import options as O
from sigprop.spec import Spec
from sigprop.training.config import TrainConfig


def _app(**kw):
    seen = {}

    @O.spec_options(seq_len=32)
    @O.train_options("steps", "lr", "grad_clip", "device", **kw)
    def cmd(spec: Spec, config: TrainConfig, flag: bool = False) -> None:
        seen.update(spec=spec, config=config, flag=flag)

    app = typer.Typer()
    app.command()(cmd)
    app.command("other")(lambda: None)  # two commands, so typer keeps the sub-command name
    return app, seen


def test_every_training_option_is_a_config_field_with_its_default():
    fields = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    for o in O.TRAIN_OPTIONS:
        assert o.name in fields, o.name
        p = o.parameter()
        assert p.default == fields[o.name], o.name
    flags = [f for o in O.TRAIN_OPTIONS for f in o.flags]
    assert len(flags) == len(set(flags))


def test_decorated_command_receives_a_train_config():
    app, seen = _app(steps=7)
    r = CliRunner().invoke(app, ["cmd", "--lr", "0.01", "--grad-clip", "0", "-T", "16", "--flag"])
    assert r.exit_code == 0, r.output
    c = seen["config"]
    assert (c.steps, c.lr, c.grad_clip, c.seq_len, c.device) == (7, 0.01, None, 16, "cpu")
    assert seen["spec"].seq_len == 16 and seen["flag"] is True
    assert c.batch_size == TrainConfig().batch_size  # not taken: TrainConfig's default
    r = CliRunner().invoke(app, ["cmd", "--grad-clip", "0.5"])
    assert r.exit_code == 0 and seen["config"].grad_clip == 0.5 and seen["config"].seq_len == 32


def test_refused_value_is_one_line_and_exit_2():
    app, _ = _app()
    r = CliRunner().invoke(app, ["cmd", "--steps", "0"])
    assert r.exit_code == 2
    assert r.output.strip() == "error: steps must be an integer ≥ 1; got 0"


def test_decorator_contract():
    with pytest.raises(TypeError, match="not training options"):
        O.train_options("nope")
    with pytest.raises(TypeError, match="not training options"):
        O.train_options(stepz=3)

    def clashing(spec: Spec, config: TrainConfig, steps: int = 1) -> None: ...

    with pytest.raises(TypeError, match="steps"):
        O.train_options()(clashing)
