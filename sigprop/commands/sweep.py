"""``sigprop sweep``: the empirical trainability map — train every (β, α_SA) grid point and compare the
measured loss gain with the theory's regions (:mod:`sigprop.training.sweep`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sigprop.commands.common import Format, FormatO, dumps, parse_range
from sigprop.commands.options import TRAIN_PANEL, spec_options, train_options
from sigprop.spec import Spec
from sigprop.training.config import TrainConfig

S = "Sweep"


@spec_options(exclude=("beta", "qk_std", "alpha_sa"), depth=2, seq_len=64, width=128)
@train_options("corpus", "steps", "batch_size", "lr", "seed", "vocab_size", "eval_rows", "n_stories", "device",
               steps=500, batch_size=32, lr=1e-3,
               helps={"steps": "optimiser steps per point", "seed": "seed of every point (model init, data order, masking)"})
def sweep_cmd(
    spec: Spec,
    config: TrainConfig,
    beta_range: Annotated[tuple[float, float, int] | None, typer.Option("--beta-range", help="β grid: LO HI N (linspace)", rich_help_panel=S)] = None,
    alpha_range: Annotated[tuple[float, float, int] | None, typer.Option("--alpha-range", help="α_SA grid: LO HI N (linspace)", rich_help_panel=S)] = None,
    out: Annotated[Path, typer.Option("--out", help="sweep folder: points/<key>.json, sweep.json, sweep.png", rich_help_panel=S)] = Path("sigprop-sweep"),
    executor: Annotated[str, typer.Option("--executor", help="local (process pool) or dask (existing cluster)", rich_help_panel=S)] = "local",
    scheduler: Annotated[str | None, typer.Option("--scheduler", help="Dask scheduler address, e.g. tcp://host:8786", rich_help_panel=S)] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="local worker processes (default: all cores; torch threads = cores/workers)", rich_help_panel=S)] = None,
    eps: Annotated[float, typer.Option("--eps", help="theory labels: rank collapse if ρ_L ≥ 1 − eps (as in `sigprop diagram`); a finished folder is relabelled without retraining", rich_help_panel=S)] = 0.01,
    threshold: Annotated[float, typer.Option("--threshold", help="measured trainable ⇔ gain below unigram ≥ this (nats) and not diverged", rich_help_panel=S)] = 0.3,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="progress bar over points (stderr)", rich_help_panel=TRAIN_PANEL)] = True,
    fmt: FormatO = Format.text,
) -> None:
    """Train every (β, α_SA) grid point; write per-point files, sweep.json (agreement) and sweep.png."""
    from sigprop.training.sweep import sweep

    try:
        betas = parse_range("--beta-range", beta_range, (0.25, 3.0, 4))
        alphas = parse_range("--alpha-range", alpha_range, (0.0, 2.0, 3))
        if workers is not None and workers < 1:
            raise ValueError(f"--workers must be ≥ 1; got {workers}")
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if executor == "local" and config.device == "cpu":
        # fail early (one line) when the corpus is missing, before starting workers
        from sigprop.data import CorpusUnavailable, load_corpus

        try:
            load_corpus(config.corpus, n_stories=config.n_stories)
        except CorpusUnavailable as exc:
            typer.echo(str(exc).splitlines()[0] if str(exc) else "corpus unavailable", err=True)
            raise typer.Exit(2) from None
    try:
        res = sweep(spec, betas, alphas, config, out, executor=executor, workers=workers, scheduler=scheduler,
                    threshold=threshold, progress=progress and fmt == Format.text, diagram_kwargs={"eps": eps})
    except KeyboardInterrupt:
        typer.echo(f"interrupted: finished points are kept in {out / 'points'}; rerun the same command to "
                   "train the rest", err=True)
        raise typer.Exit(130) from None
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    d = res.to_dict()
    if fmt == Format.json:
        typer.echo(dumps({k: v for k, v in d.items() if k != "points"} | {"points": [
            {k: p.get(k) for k in ("key", "beta", "alpha_sa", "predicted", "gain", "measured_trainable", "agree",
                                   "diverged")} for p in d["points"]]}))
        return
    a = res.agreement
    typer.echo(f"{res.status}: {res.ran} trained, {res.skipped} already done, {len(res.failed)} failed "
               f"({len(res.points)} points)")
    typer.echo(f"{'beta':>7} {'alpha':>7} {'predicted':>17} {'gain':>8} {'trained':>8} agree")
    for p in res.points:
        g = p.get("gain")
        typer.echo(f"{p['beta']:7.3f} {p['alpha_sa']:7.3f} {p['predicted']:>17} "
                   f"{'—' if g is None else f'{g:8.3f}':>8} {str(p.get('measured_trainable', '—')):>8} "
                   f"{p.get('agree', '—')}" + ("  (diverged)" if p.get("diverged") else ""))
    frac = a["fraction"]
    typer.echo(f"agreement {('—' if frac is None else f'{frac:.2f}')} over {a['n_points']} points "
               f"(measured trainable ⇔ gain ≥ {res.threshold:g} nats and not diverged; predicted ⇔ 'trainable')")
    auc = a.get("auc")
    if auc is not None:
        typer.echo(f"ranking AUC {auc:.2f} (chance a predicted-trainable point gained more than a predicted-collapse "
                   "one; 1 = perfect, 0.5 = chance)")
    for f in res.failed:
        typer.echo(f"failed {f['key']}: {f['error']}", err=True)
    typer.echo(f"wrote {out / 'sweep.json'}" + (f" and {res.files['png']}" if "png" in res.files else ""))


def register(app: typer.Typer) -> None:
    # registers fig1e, fig3ab, fig6, fig8 and "training" in the `sigprop reproduce` figure registry
    import sigprop.experiments.training  # noqa: F401

    app.command("sweep", help="Empirical trainability map: train a (β, α_SA) grid and compare with the theory.")(sweep_cmd)
