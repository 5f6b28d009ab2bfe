"""``sigprop rem``, ``sigprop propagate``, ``sigprop diagram``: the analytic theory from the shell."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from sigprop.commands.common import (
    AlphaMLP,
    AlphaSA,
    Activation,
    AttentionO,
    Asymptotic,
    Beta,
    Causal,
    Depth,
    FormatO,
    Format,
    NormO,
    Norm,
    Attention,
    QKStd,
    Rho0,
    SeqLen,
    SigmaB2,
    SigmaV2,
    SigmaW2,
    build_spec,
    dumps,
    parse_range,
    write_atomic,
)

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


def propagate_cmd(
    depth: Depth = 12, norm: NormO = Norm.post, attention: AttentionO = Attention.softmax,
    activation: Activation = "relu", beta: Beta = 1.0, qk_std: QKStd = None, alpha_sa: AlphaSA = 1.0,
    alpha_mlp: AlphaMLP = 1.0, sigma_w2: SigmaW2 = 0.2, sigma_v2: SigmaV2 = 0.2, sigma_b2: SigmaB2 = 4e-4,
    seq_len: SeqLen = 512, rho0: Rho0 = 0.03, causal: Causal = False, asymptotic: Asymptotic = False,
    fmt: FormatO = Format.text,
) -> None:
    """Per-layer theory: ρ_ℓ, q_ℓ, Y²_ℓ, attention entropy, β_c(ρ_{ℓ−1})."""
    from sigprop.diagram import where
    from sigprop.theory.propagate import propagate

    spec = build_spec(**locals())
    pr = propagate(spec, finite_T=not asymptotic)
    region = where(spec, finite_T=not asymptotic)
    if fmt == Format.json:
        d = pr.to_dict()
        d["region"] = region
        d["spec"] = spec.to_dict()
        typer.echo(dumps(d))
        return
    t = Table(title=f"{spec.norm}-LN, {spec.attention}, L={spec.depth}, β={spec.beta:.4g}, α_SA={spec.alpha_sa:g}, T={spec.seq_len}"
              + (" (T→∞)" if asymptotic else " (finite T)"))
    for c in ("layer", "ρ", "q", "Y²", "entropy/lnT", "β_c(in)"):
        t.add_column(c, justify="right")
    step = max(1, spec.depth // 40)
    for ell in range(0, spec.depth + 1):
        if ell % step and ell != spec.depth:
            continue
        f = lambda a: "" if ell == 0 else f"{a[ell]:.4f}"  # noqa: E731
        t.add_row(str(ell), f"{pr.rho[ell]:.4f}", f"{pr.q[ell]:.4g}", f(pr.y2), f(pr.entropy), f(pr.beta_c))
    console.print(t)
    console.print(f"region: [bold]{region}[/bold]")


def diagram_cmd(
    out: Annotated[Path, typer.Option("--out", help="output folder for diagram.png and diagram.json")] = Path("sigprop-out"),
    depth: Depth = 12, norm: NormO = Norm.post, attention: AttentionO = Attention.softmax,
    activation: Activation = "relu", beta: Beta = 1.0, qk_std: QKStd = None, alpha_sa: AlphaSA = 1.0,
    alpha_mlp: AlphaMLP = 1.0, sigma_w2: SigmaW2 = 0.2, sigma_v2: SigmaV2 = 0.2, sigma_b2: SigmaB2 = 4e-4,
    seq_len: SeqLen = 512, rho0: Rho0 = 0.03, causal: Causal = False, asymptotic: Asymptotic = False,
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

    spec = build_spec(**locals())
    betas = parse_range("--beta-range", beta_range, (0.05, 4.0, 120))
    alphas = parse_range("--alpha-range", alpha_range, (0.0, 3.0, 120))
    finite = not asymptotic
    d = dg.diagram(spec, ("beta", betas), ("alpha_sa", alphas), eps=eps, entropy_rule=entropy_rule, finite_T=finite)
    if gradients:
        _add_gradient_overlay(d)
    region = dg.where(spec, eps=eps, entropy_rule=entropy_rule, finite_T=finite)
    rec = dg.recommend_from(d)
    alpha_c = float(dg.critical_alpha(spec, eps=eps, finite_T=finite))
    summary = _summary(spec, region, rec, alpha_c, d)
    payload = d.to_dict()
    payload.update({"your_model": {"beta": spec.beta, "alpha_sa": spec.alpha_sa, "region": region},
                    "recommended": rec.to_dict() if rec else None, "alpha_c": alpha_c, "summary": summary})
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "diagram.json", dumps(payload))
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 5.0))
    plot_diagram(d, ax, mark=(spec.beta, spec.alpha_sa), recommended=(rec.x, rec.y) if rec else None)
    fig.tight_layout()
    savefig_atomic(fig, out / "diagram.png", dpi=130)
    plt.close(fig)
    if fmt == Format.json:
        typer.echo(dumps(payload))
        return
    console.print(summary)
    console.print(f"wrote {out / 'diagram.png'} and {out / 'diagram.json'}")


def _add_gradient_overlay(d) -> None:
    try:
        from sigprop.theory import gradients
    except ImportError:
        return
    d.overlays["grad_vanishing"] = gradients.vanishing_mask(d)


def _summary(spec, region, rec, alpha_c, d) -> str:
    from sigprop.theory.rem import beta_c_rho

    bc0 = float(beta_c_rho(spec.rho0))
    words = {
        "trainable": "TRAINABLE: it avoids both rank collapse and entropy collapse at initialisation",
        "rank_collapse": f"RANK COLLAPSE: tokens become identical with depth (ρ_L ≥ {1 - d.eps:g})",
        "entropy_collapse": "ENTROPY COLLAPSE: attention freezes on a few random keys (β above β_c)",
    }
    fr = d.fractions()
    lines = [
        f"Your model ({spec.norm}-LN, {spec.attention} attention, {spec.activation}, L={spec.depth}, T={spec.seq_len}, "
        f"β={spec.beta:.4g}, α_SA={spec.alpha_sa:g}, α_MLP={spec.alpha_mlp:g}) is {words[region]}.",
        f"Entropy collapse starts at β_c(ρ₀={spec.rho0:g}) = {bc0:.3f}; rank collapse is avoided for α_SA > α_c(L={spec.depth}) = {alpha_c:.3f}.",
    ]
    if rec is not None:
        lines.append(f"Recommended (largest margin on this grid): β = {rec.x:.3f}, α_SA = {rec.y:.3f} (ρ_L = {rec.rho_final:.3f}).")
    else:
        lines.append("No trainable point on this grid: widen --alpha-range or reduce depth.")
    if "grad_vanishing" in d.overlays:
        frac = float(np.mean(d.overlays["grad_vanishing"]))
        lines.append(f"W_Q gradients vanish (below the documented fraction of their large-β value) on {frac:.0%} of the grid.")
    lines.append(f"Grid: {fr['trainable']:.0%} trainable, {fr['rank_collapse']:.0%} rank collapse, {fr['entropy_collapse']:.0%} entropy collapse"
                 + (" (finite-T theory)." if d.finite_T else " (T→∞ theory)."))
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    app.command("rem")(rem_cmd)
    app.command("propagate")(propagate_cmd)
    app.command("diagram")(diagram_cmd)
