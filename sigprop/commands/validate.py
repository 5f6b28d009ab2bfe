"""``sigprop validate`` (theory vs real torch twins) and ``sigprop reproduce NAME`` (paper figures)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from sigprop.commands.common import Format, FormatO, dumps
from sigprop.commands.options import spec_options
from sigprop.spec import Spec

console = Console()


@spec_options(seq_len=256, rho0=0.2, width=256)
def validate_cmd(
    spec: Spec,
    out: Annotated[Path, typer.Option("--out", help="output folder for validation.json and validation.png")] = Path("sigprop-out"),
    seeds: Annotated[int, typer.Option("--seeds", help="fresh models per point")] = 3,
    batch: Annotated[int, typer.Option("--batch", help="input sequences per model")] = 1,
    last_k: Annotated[int | None, typer.Option("--last-k", help="statistics over the last k tokens only (decoders)")] = None,
    fmt: FormatO = Format.text,
) -> None:
    """Theory vs measurement, layer by layer, on fresh PyTorch twins fed Gaussian tokens of cosine ρ₀."""
    from sigprop.validate import validate

    width = spec.width
    if width < 2:
        raise ValueError(f"--width must be ≥ 2; got {width}")
    if not 1 <= seeds <= 100:
        raise ValueError(f"--seeds must be in [1, 100]; got {seeds}")
    if not 1 <= batch <= 1024:
        raise ValueError(f"--batch must be in [1, 1024]; got {batch}")
    if fmt != Format.json:  # validate's defaults are smaller than diagram's (T=512, ρ₀=0.03): say which ones ran
        console.print(f"settings: T={spec.seq_len}, ρ₀={spec.rho0:g}, d={width}, L={spec.depth}, {seeds} seeds "
                      "(validate's defaults T=256, ρ₀=0.2 keep the torch twins fast; diagram's are T=512, ρ₀=0.03)")
    rep = validate(spec, seeds=seeds, batch=batch, last_k=last_k, progress=fmt != Format.json)
    out.mkdir(parents=True, exist_ok=True)
    rep.write_json(out / "validation.json")
    rep.plot(out / "validation.png")
    if fmt == Format.json:
        typer.echo(dumps(rep.to_dict()))
        return
    pt = rep.points[0]
    t = Table(title=f"validation: {spec.norm}-LN {spec.attention}, β={spec.beta:g}, α_SA={spec.alpha_sa:g}, "
                    f"L={spec.depth}, d={width}, T={spec.seq_len}, ρ₀={spec.rho0:g}, {seeds} seeds")
    t.add_column("quantity")
    for c in ("max |err| finite-T", "mean |err| finite-T", "max |err| T=∞", "mean |err| T=∞", "worst layer"):
        t.add_column(c, justify="right")
    f = lambda v: "—" if v is None else f"{v:.4f}"  # noqa: E731
    for name in ("rho", "q", "y2", "entropy"):
        e = pt.errors[name]
        t.add_row(name, f(e["finite"]["max"]), f(e["finite"]["mean"]), f(e["asymptotic"]["max"]),
                  f(e["asymptotic"]["mean"]), str(e["finite"]["argmax_layer"]))
    console.print(t)
    console.print(f"ρ_L: theory (finite T) {pt.theory_finite['rho'][-1]:.4f}, measured ρ_gram "
                  f"{pt.measured_mean['rho_gram'][-1]:.4f} ± {pt.measured_std['rho_gram'][-1]:.4f}, "
                  f"mean cosine {pt.measured_mean['cosine'][-1]:.4f}")
    console.print(f"wrote {out / 'validation.json'} and {out / 'validation.png'}")


def reproduce_cmd(
    name: Annotated[str, typer.Argument(help="figure: fig1d, fig2, fig3c, fig4, fig5, fig7, fig12 (propagation and gradients); fig1e, fig3ab, fig6, fig8, training (training)")],
    full: Annotated[bool, typer.Option("--full", help="the paper's sizes (slow); default: small CPU sizes")] = False,
    out: Annotated[Path, typer.Option("--out", help="output folder for NAME.png and NAME.json")] = Path("sigprop-out"),
    seeds: Annotated[int | None, typer.Option("--seeds", help="seeds (models / Monte Carlo repeats)")] = None,
    fmt: FormatO = Format.text,
) -> None:
    """Reproduce a paper figure: theory, measurement, and whether each of its claims held at this size."""
    from sigprop.experiments.reproduce import reproduce

    payload = reproduce(name, out, full=full, seeds=seeds, progress=fmt != Format.json)
    if fmt == Format.json:
        typer.echo(dumps(payload))
        return
    t = Table(title=f"{name}: claims ({'paper sizes' if full else 'small CPU sizes'})")
    t.add_column("held")
    t.add_column("claim")
    for c in payload.get("claims", []):
        t.add_row("[green]yes[/green]" if c["held"] else "[red]no[/red]", c["claim"])
    console.print(t)
    files = payload.get("files", {})
    console.print(f"wrote {files.get('png', out / (name + '.png'))} and {files.get('json', out / (name + '.json'))}")


def register(app: typer.Typer) -> None:
    app.command("validate")(validate_cmd)
    app.command("reproduce")(reproduce_cmd)
