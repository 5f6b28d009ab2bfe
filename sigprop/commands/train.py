"""``sigprop train``: train the torch twin of a spec on a corpus and compare with the theory's prediction.

Writes ``OUT/metrics.jsonl`` (one record per evaluation), ``OUT/summary.json`` (atomic) and
``OUT/checkpoint.pt``; ``--resume`` continues from the checkpoint. A missing corpus is one line and exit
code 2; Ctrl-C checkpoints and exits 130.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

import typer

from sigprop.commands.common import Format, FormatO, dumps
from sigprop.commands.options import TRAIN_PANEL, spec_options, train_options
from sigprop.spec import Spec
from sigprop.training.config import TrainConfig


@spec_options(depth=2, seq_len=64, width=128)
@train_options()
def train_cmd(
    spec: Spec,
    config: TrainConfig,
    out: Annotated[Path, typer.Option("--out", help="run folder: metrics.jsonl, summary.json, checkpoint.pt", rich_help_panel=TRAIN_PANEL)] = Path("sigprop-run"),
    resume: Annotated[bool, typer.Option("--resume", help="continue from OUT/checkpoint.pt", rich_help_panel=TRAIN_PANEL)] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="rich progress bar on stderr", rich_help_panel=TRAIN_PANEL)] = True,
    fmt: FormatO = Format.text,
) -> None:
    """Train the twin (masked-LM encoder, or next-token decoder with --causal) and log collapse probes."""
    from sigprop.training.loop import train

    if resume and not (out / "checkpoint.pt").exists():
        typer.echo(f"note: no checkpoint in {out}; starting a fresh run", err=True)
    try:
        result = train(spec, config, out, resume=resume, progress=progress and fmt == Format.text,
                       handle_sigint=True)
    except KeyboardInterrupt:
        import json

        done = "?"
        with contextlib.suppress(Exception):
            done = json.loads((out / "summary.json").read_text())["steps_done"]
        typer.echo(f"interrupted at step {done}: checkpoint and summary written to {out}; "
                   "rerun the same command with --resume to continue", err=True)
        raise typer.Exit(130) from None
    s = result.summary
    if fmt == Format.json:
        typer.echo(dumps({k: v for k, v in s.items() if k != "config"}))
    else:
        _print_text(s, out)
    if s["diverged"]:
        # a diverged run is a result (exit 0), reported on stderr in one line
        typer.echo(f"diverged: {s['reason']}; the last good checkpoint is {out / 'checkpoint.pt'}", err=True)


def _print_text(s: dict, out: Path) -> None:
    from rich.console import Console

    from sigprop.training import summary_lines

    c = Console()
    for line in summary_lines(s, out):
        c.print(line, markup=False)


def register(app: typer.Typer) -> None:
    app.command("train", help="Train the torch twin on a corpus (MLM or next-token) with collapse monitoring.")(train_cmd)
