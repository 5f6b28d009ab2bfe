"""``sigprop gradients`` and ``sigprop reproduce-fig3c``: Result 2 (W_Q gradients at initialisation, paper Fig 3c).

Theory curves come from :mod:`sigprop.theory.gradients`; measurements (``--measure``) from
:mod:`sigprop.experiments.gradients` on the torch twin. The work is done by
:mod:`sigprop.experiments.fig3c`; this module parses and renders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from sigprop.commands.common import Format, FormatO, dumps, parse_range
from sigprop.experiments.fig3c import MODE_HELP, reproduce_fig3c, run_gradients

console = Console(stderr=True)

def gradients_cmd(
    out: Annotated[Path, typer.Option("--out", help="output folder for gradients.json and gradients.png")] = Path("sigprop-out"),
    beta_range: Annotated[tuple[float, float, int], typer.Option("--beta-range", help="lo hi n")] = (0.01, 3.0, 15),
    seq_len: Annotated[list[int] | None, typer.Option("--seq-len", "-T", help="T (repeatable)")] = None,
    width: Annotated[list[int] | None, typer.Option("--width", "-d", help="d (repeatable)")] = None,
    measure: Annotated[bool, typer.Option("--measure", help="also measure the torch twin")] = False,
    seeds: Annotated[int, typer.Option("--seeds", help="models per point")] = 3,
    mode: Annotated[str, typer.Option("--mode", help=MODE_HELP)] = "random",
    depth: Annotated[int, typer.Option("--depth", "-L", help="blocks (mlm mode)")] = 1,
    rho: Annotated[float, typer.Option("--rho", help="input cosine ρ (random mode and theory)")] = 0.0,
    sigma_v2: Annotated[float | None, typer.Option("--sigma-v2", help="σ_v² (default 1 random, 0.2 mlm)")] = None,
    fmt: FormatO = Format.text,
) -> None:
    """W_Q gradient norm at initialisation vs β (Result 2 / Fig 3c): theory curves, optional measurements."""
    betas = parse_range("--beta-range", beta_range, (0.01, 3.0, 15))
    seq_lens = list(seq_len) if seq_len else [512]
    widths = list(width) if width else [128]
    payload = run_gradients(betas, seq_lens, widths, out=out, measure=measure, seeds=seeds, mode=mode, depth=depth,
                            rho=rho, sigma_v2=sigma_v2, progress=fmt != Format.json)
    if fmt == Format.json:
        typer.echo(dumps(payload))
        return
    console.print(f"theory collapse across (T, d), max spread for β ≥ 1: {payload['theory_collapse']['max_spread_above_beta_min']:.3g}")
    if measure:
        r = payload["ratio_measured_over_predicted_beta_ge_1.5"]
        if r:
            console.print(f"measured/predicted (finite T) for β ≥ 1.5: {r['min']:.3f} … {r['max']:.3f} (mean {r['mean']:.3f})")
        console.print(f"measured collapse, max spread for β ≥ 1: {payload['collapse']['measured']['max_spread_above_beta_min']:.3g}")
    console.print(f"wrote {Path(out) / 'gradients.png'} and {Path(out) / 'gradients.json'}")


def fig3c_cmd(
    out: Annotated[Path, typer.Option("--out", help="output folder")] = Path("sigprop-out/fig3c"),
    full: Annotated[bool, typer.Option("--full", help="paper sizes (T 2048/4096, d 256/512; slow on CPU)")] = False,
    fmt: FormatO = Format.text,
) -> None:
    """Reproduce paper Fig 3c (W_Q gradients collapse under T d⁻² (ln T)^{-1/2}; vanish at low β)."""
    payload = reproduce_fig3c(out, full=full, progress=fmt != Format.json)
    if fmt == Format.json:
        typer.echo(dumps(payload))
        return
    c = payload["collapse"]["measured"]
    console.print(f"scaled curves {'collapse' if payload['collapses'] else 'do NOT collapse'}: max spread across (T, d) "
                  f"for β ≥ 1 = {c['max_spread_above_beta_min']:.3f}; scaled(β=3)/scaled(β=0.01) = {c['dynamic_range_max_over_min_beta']:.3g}")
    console.print(f"wrote {Path(out) / 'gradients.png'} and {Path(out) / 'gradients.json'}")


def register(app: typer.Typer) -> None:
    app.command("gradients")(gradients_cmd)
    app.command("reproduce-fig3c")(fig3c_cmd)
