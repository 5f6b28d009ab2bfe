"""``sigprop rem``, ``sigprop propagate``, ``sigprop diagram``: the analytic theory from the shell."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from sigprop.commands.common import Asymptotic, Format, FormatO, dumps, parse_range, write_atomic
from sigprop.commands.options import spec_options
from sigprop.progress import bar
from sigprop.spec import Spec

console = Console()


def rem_cmd(
    beta: Annotated[float, typer.Option("--beta", help="β ≥ 0")],
    rho: Annotated[float, typer.Option("--rho", help="cosine ρ ∈ [0, 1] of the tokens the attention sees")] = 0.0,
    seq_len: Annotated[int, typer.Option("--seq-len", "-T", help="T ≥ 2 keys (and ln T in the init)")] = 512,
    asymptotic: Asymptotic = False,
    fmt: FormatO = Format.text,
) -> None:
    """REM statistics of one attention row: β_c, Y², Y³, Φ, S, E tr J², entropy, overlap."""
    from sigprop.theory import rem

    st = rem.stats(beta, rho, seq_len, finite_T=not asymptotic)
    out = {
        "beta": beta, "rho": rho, "seq_len": seq_len, "finite_T": not asymptotic,
        "beta_c": float(st.beta_c), "y2": float(st.y2), "y3": float(st.y3), "y4": float(st.y4),
        "y2_squared_mean": float(st.y2_squared_mean), "trace_j2": float(st.trace_j2),
        "free_entropy": float(st.free_entropy), "entropy": float(st.entropy), "overlap": float(st.overlap),
        "phase": "condensed (entropy-collapse side)" if beta > float(st.beta_c) else "replica-symmetric (rank-collapse side)",
    }
    if fmt == Format.json:
        typer.echo(dumps(out))
        return
    t = Table(title=f"REM row statistics, β={beta:g}, ρ={rho:g}, T={seq_len} ({'T→∞' if asymptotic else 'exact finite T'})")
    t.add_column("quantity")
    t.add_column("value", justify="right")
    t.add_column("meaning")
    rows = [
        ("β_c", out["beta_c"], "critical β, sqrt(2/(1−ρ))"),
        ("Y²", out["y2"], "E Σ A²; 1/Y² keys attended"),
        ("Y³", out["y3"], "E Σ A³"),
        ("E(ΣA²)²", out["y2_squared_mean"], "two-replica moment"),
        ("E tr J²", out["trace_j2"], "softmax Jacobian, drives ∂L/∂W_Q"),
        ("Φ", out["free_entropy"], "free entropy / ln T"),
        ("S", out["entropy"], "row entropy / ln T"),
        ("overlap", out["overlap"], "E Σ A_t A_τ of two rows"),
    ]
    for name, v, meaning in rows:
        t.add_row(name, f"{v:.6g}", meaning)
    console.print(t)
    console.print(f"phase: {out['phase']}")


#: Depth from which ``sigprop propagate`` shows a progress bar (about a second of work per 300 blocks).
LONG_DEPTH = 2000


@spec_options()
def propagate_cmd(spec: Spec, asymptotic: Asymptotic = False, fmt: FormatO = Format.text) -> None:
    """Per-layer theory: ρ_ℓ, q_ℓ, Y²_ℓ, attention entropy, β_c(ρ_{ℓ−1})."""
    from sigprop.diagram import verdict
    from sigprop.theory.propagate import propagate

    show = fmt != Format.json and spec.depth >= LONG_DEPTH
    with bar(show, "propagating blocks", spec.depth) as b:
        pr = propagate(spec, finite_T=not asymptotic, progress=(lambda ell, L: b.advance()) if show else None)
    if show:
        console.print(f"checking the margins (α_c by bisection over L={spec.depth} blocks, β_c) …")
    v = verdict(spec, finite_T=not asymptotic)  # its region is where()'s, with the same defaults
    region = v.region
    if fmt == Format.json:
        d = pr.to_dict()
        d["region"] = region
        d["verdict"] = v.text
        d["spec"] = spec.to_dict()
        typer.echo(dumps(d))
        return
    t = Table(title=f"{spec.norm}-LN, {spec.attention}{' (causal)' if spec.causal else ''}, L={spec.depth}, β={spec.beta:.4g}, α_SA={spec.alpha_sa:g}, T={spec.seq_len}"
              + (" (T→∞)" if asymptotic else " (finite T)"))
    for c in ("layer", "ρ", "q", "Y²", "entropy/lnT", "β_c(in)"):
        t.add_column(c, justify="right")
    step = max(1, spec.depth // 40)
    rho, q = pr.rho, pr.q
    assert rho is not None and q is not None  # recorded by default
    for ell in range(0, spec.depth + 1):
        if ell % step and ell != spec.depth:
            continue
        f = lambda a, ell=ell: "" if ell == 0 else f"{a[ell]:.4f}"  # noqa: E731
        t.add_row(str(ell), f"{rho[ell]:.4f}", f"{q[ell]:.4g}", f(pr.y2), f(pr.entropy), f(pr.beta_c))
    console.print(t)
    console.print(f"region: [bold]{region}[/bold]")
    console.print(v.text)
    console.print("run `sigprop diagram` with the same options for the recommended point.")


@spec_options()
def diagram_cmd(
    spec: Spec,
    out: Annotated[Path, typer.Option("--out", help="output folder for diagram.png and diagram.json")] = Path("sigprop-out"),
    asymptotic: Asymptotic = False,
    beta_range: Annotated[tuple[float, float, int], typer.Option("--beta-range", help="lo hi n")] = (0.05, 4.0, 120),
    alpha_range: Annotated[tuple[float, float, int], typer.Option("--alpha-range", help="lo hi n")] = (0.0, 3.0, 120),
    eps: Annotated[float, typer.Option("--eps", help="rank collapse if ρ_L ≥ 1 − eps")] = 0.01,
    entropy_rule: Annotated[str, typer.Option("--entropy-rule", help="any | first | fraction")] = "any",
    gradients: Annotated[bool, typer.Option("--gradients/--no-gradients", help="overlay the vanishing-gradient region")] = True,
    fmt: FormatO = Format.text,
) -> None:
    """Trainability diagram over (β, α_SA): regions, boundaries, where your model sits, a recommendation."""
    from sigprop import diagram as dg
    from sigprop.plot import plot_diagram, savefig_atomic

    betas = parse_range("--beta-range", beta_range, (0.05, 4.0, 120))
    alphas = parse_range("--alpha-range", alpha_range, (0.0, 3.0, 120))
    for name, v in (("--beta-range", betas), ("--alpha-range", alphas)):
        if v.size < 2:
            raise ValueError(f"{name} needs at least 2 points (n ≥ 2) for a diagram; got n = {v.size}")
    show = fmt == Format.text and spec.causal  # a causal diagram takes seconds (position-resolved state)
    with bar(show, "diagram: blocks propagated", spec.depth) as b:
        rep = dg.report(spec, betas, alphas, eps=eps, entropy_rule=entropy_rule, finite_T=not asymptotic,
                        gradients=gradients, progress=(lambda ell, L: b.set(ell)) if show else None)
    # large grids keep their per-cell arrays in diagram.npz (a 2000×2000 grid is ~230 MB as JSON)
    text = rep.to_json("diagram.npz" if rep.compact else None)
    import matplotlib.pyplot as plt

    # render the PNG first: a failed plot must not leave a diagram.json without its figure
    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.4, 5.0))
    try:
        rec = rep.recommended
        plot_diagram(rep.diagram, ax, mark=(float(spec.beta), float(spec.alpha_sa)), recommended=(rec.x, rec.y) if rec else None)
        fig.tight_layout()
        png = savefig_atomic(fig, out / "diagram.png", dpi=130)
    finally:
        plt.close(fig)
    try:
        if rep.compact:
            buf = io.BytesIO()
            arrays: dict[str, Any] = rep.arrays()  # names of arrays, not savez's keyword options
            np.savez_compressed(buf, **arrays)
            write_atomic(out / "diagram.npz", buf.getvalue())
        write_atomic(out / "diagram.json", text)
    except BaseException:
        png.unlink(missing_ok=True)
        raise
    if fmt == Format.json:
        typer.echo(text)
        return
    console.print(rep.summary)
    console.print(f"wrote {out / 'diagram.png'} and {out / 'diagram.json'}")


def register(app: typer.Typer) -> None:
    app.command("rem")(rem_cmd)
    app.command("propagate")(propagate_cmd)
    app.command("diagram")(diagram_cmd)
