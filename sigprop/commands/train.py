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
from sigprop.commands.options import spec_options
from sigprop.spec import Spec

R = "Training"


@spec_options(depth=2, seq_len=64, width=128)
def train_cmd(
    spec: Spec,
    out: Annotated[Path, typer.Option("--out", help="run folder: metrics.jsonl, summary.json, checkpoint.pt", rich_help_panel=R)] = Path("sigprop-run"),
    corpus: Annotated[str, typer.Option("--corpus", help="synthetic | fortunes | PATH (text file or folder) | hf:NAME[:CONFIG]", rich_help_panel=R)] = "synthetic",
    steps: Annotated[int, typer.Option("--steps", help="optimiser steps", rich_help_panel=R)] = 1000,
    batch_size: Annotated[int, typer.Option("--batch-size", "-B", help="sequences per step", rich_help_panel=R)] = 64,
    lr: Annotated[float, typer.Option("--lr", help="peak learning rate (AdamW, linear warmup then linear decay)", rich_help_panel=R)] = 5e-4,
    warmup: Annotated[float, typer.Option("--warmup", help="warmup fraction of the steps", rich_help_panel=R)] = 0.05,
    weight_decay: Annotated[float, typer.Option("--weight-decay", help="AdamW weight decay (matrices only)", rich_help_panel=R)] = 0.01,
    grad_clip: Annotated[float, typer.Option("--grad-clip", help="max gradient norm (0: off)", rich_help_panel=R)] = 1.0,
    seed: Annotated[int, typer.Option("--seed", help="model init, data order, masking, dropout", rich_help_panel=R)] = 0,
    vocab_size: Annotated[int, typer.Option("--vocab-size", help="WordPiece vocabulary size", rich_help_panel=R)] = 2000,
    mlm_probability: Annotated[float, typer.Option("--mlm-probability", help="masking rate (encoder)", rich_help_panel=R)] = 0.15,
    dropout: Annotated[float, typer.Option("--dropout", help="dropout on attention and branch outputs", rich_help_panel=R)] = 0.0,
    emb_std: Annotated[float, typer.Option("--emb-std", help="token embedding std", rich_help_panel=R)] = 0.1,
    pos_std: Annotated[float, typer.Option("--pos-std", help="position embedding std", rich_help_panel=R)] = 0.1,
    freeze_uniform_attention: Annotated[bool, typer.Option("--freeze-uniform-attention", help="fix attention to uniform (control: what does attention learn?)", rich_help_panel=R)] = False,
    eval_every: Annotated[int | None, typer.Option("--eval-every", help="evaluate every N steps (default steps/20)", rich_help_panel=R)] = None,
    eval_rows: Annotated[int, typer.Option("--eval-rows", help="test rows in the fixed evaluation subset", rich_help_panel=R)] = 256,
    checkpoint_every: Annotated[int | None, typer.Option("--checkpoint-every", help="checkpoint every N steps (default max(eval interval, steps/10))", rich_help_panel=R)] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue from OUT/checkpoint.pt", rich_help_panel=R)] = False,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda", rich_help_panel=R)] = "cpu",
    threads: Annotated[int, typer.Option("--threads", help="torch CPU threads", rich_help_panel=R)] = 2,
    n_stories: Annotated[int | None, typer.Option("--n-stories", help="synthetic corpus size (stories)", rich_help_panel=R)] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="rich progress bar on stderr", rich_help_panel=R)] = True,
    fmt: FormatO = Format.text,
) -> None:
    """Train the twin (masked-LM encoder, or next-token decoder with --causal) and log collapse probes."""
    from sigprop.train import TrainConfig, train

    config = TrainConfig(
        corpus=corpus, steps=steps, batch_size=batch_size, seq_len=spec.seq_len, lr=lr, warmup=warmup,
        weight_decay=weight_decay, grad_clip=grad_clip or None, seed=seed, vocab_size=vocab_size,
        mlm_probability=mlm_probability, dropout=dropout, emb_std=emb_std, pos_std=pos_std,
        freeze_uniform_attention=freeze_uniform_attention, eval_every=eval_every, eval_rows=eval_rows,
        checkpoint_every=checkpoint_every, device=device, threads=threads, n_stories=n_stories,
    )
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

    c = Console()
    fmt = lambda v: "—" if v is None else f"{v:.4f}"  # noqa: E731
    c.print(f"[bold]{s['status']}[/bold] after {s['steps_done']}/{s['steps']} steps "
            f"({s['objective']}, {s['corpus']}, {s['n_params']:,} parameters, {s['wall_s']:.1f} s)")
    c.print(f"test loss {fmt(s['initial_test_loss'])} → {fmt(s['final_test_loss'])}; unigram plateau "
            f"{s['unigram_loss']:.4f}; escaped (≤ unigram − {s['escape_margin']}) at step "
            f"{s['steps_to_escape'] if s['steps_to_escape'] is not None else 'never'}")
    ent = s["final_attention_entropy"] or []
    cos = s["final_cosine"] or []
    c.print("attention entropy / ln T per layer: " + ", ".join(fmt(v) for v in ent))
    c.print("token cosine per layer:             " + ", ".join(fmt(v) for v in cos))
    c.print(f"theory predicts: [bold]{s['predicted_regime']}[/bold]; "
            f"observed: rank collapse {s['rank_collapse']}, entropy collapse {s['entropy_collapse']}")
    c.print(f"wrote {out / 'summary.json'} and {out / 'metrics.jsonl'}")


def register(app: typer.Typer) -> None:
    app.command("train", help="Train the torch twin on a corpus (MLM or next-token) with collapse monitoring.")(train_cmd)
