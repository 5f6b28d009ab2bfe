"""``sigprop diagnose TARGET``: will this real model's initialisation train, and what to change.

Self-contained: ``register(app)`` adds the command; everything else is :mod:`sigprop.diagnose`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer

HELP_TARGET = ("checkpoint name (e.g. bert-base-uncased, gpt2-medium, EleutherAI/pythia-410m), transformers model_type "
               "(e.g. llama), local folder (save_pretrained) or config.json; the hub is never contacted")


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    from sigprop.io import write_atomic

    write_atomic(path, json.dumps(payload, indent=2, allow_nan=False) + "\n")


def _plots(diag: Any, out: Path) -> list[Path]:
    """diagram.png (the β × α_SA diagram with the model and the recommendation marked) and, when measured,
    overlay.png (per-layer ρ and entropy / ln T: theory lines, measured points ± seed std)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sigprop.plot import plot_diagram, savefig_atomic

    files = []
    rep = diag.report
    fig, ax = plt.subplots(figsize=(6.4, 5.0))
    try:
        rec = rep.recommended
        plot_diagram(rep.diagram, ax, mark=(float(diag.spec.beta), float(diag.spec.alpha_sa)),
                     recommended=(rec.x, rec.y) if rec else None,
                     title=f"{diag.name} (L={diag.spec.depth}, T={diag.spec.seq_len}): {diag.label.replace('_', ' ')} ({diag.support})")
        files.append(savefig_atomic(fig, out / "diagram.png", dpi=120))
    finally:
        plt.close(fig)
    if not diag.measured:
        return files
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    try:
        blocks = [("", diag.predicted, diag.measured)]
        if diag.fixed and diag.fixed.get("measured"):
            blocks.append((" (fixed)", diag.fixed["predicted"], diag.fixed["measured"]))
        for k, (ax, key, label) in enumerate(((axes[0], "rho", r"token cosine $\rho_\ell$"),
                                               (axes[1], "attn_entropy_norm", r"attention entropy / $\ln T$"))):
            del k
            for j, (suffix, pred, meas) in enumerate(blocks):
                colour = f"C{j}"
                xs = [r["layer"] for r in pred if r.get(key) is not None]
                ax.plot(xs, [r[key] for r in pred if r.get(key) is not None], color=colour, label="theory" + suffix)
                mx = [r["layer"] for r in meas if r.get(key) is not None]
                my = [r[key] for r in meas if r.get(key) is not None]
                err = [r.get(key + "_std") or 0.0 for r in meas if r.get(key) is not None]
                ax.errorbar(mx, my, yerr=err, fmt="o", ms=3, capsize=2, color=colour, label="measured" + suffix)
            ax.set_xlabel(r"layer $\ell$")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle(f"{diag.name}: measured ({diag.seeds} seeds) vs predicted", fontsize=10)
        files.append(savefig_atomic(fig, out / "overlay.png", dpi=120))
    finally:
        plt.close(fig)
    return files


def _save_fixed(diag: Any, rec: dict[str, Any], folder: Path) -> Path:
    """Build the model (seed 0) or take the given one, apply the fix, ``save_pretrained`` it to ``folder``."""
    import copy

    import torch

    from sigprop.diagnose import archs
    from sigprop.diagnose.resolve import full_config

    model = copy.deepcopy(diag.target.model) if diag.target.model is not None else None
    if model is None:
        torch.manual_seed(0)
        model = archs.builder(diag.arch)(full_config(diag.target.config)).eval()
    if not hasattr(model, "save_pretrained"):
        raise ValueError("--save-fixed needs a transformers model (it writes with save_pretrained)")
    diag.apply(model, rec)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder))
    return folder


def diagnose_cmd(
    target: Annotated[str, typer.Argument(help=HELP_TARGET)],
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a config field: key=value (repeatable)")] = None,
    seq_len: Annotated[int | None, typer.Option("--seq-len", "-T", help="T: sequence length (ln T in β; probe length)")] = None,
    depth: Annotated[int | None, typer.Option("--depth", "-L", help="number of layers (overrides the config)")] = None,
    seeds: Annotated[int, typer.Option("--seeds", help="models built and probed (empirical check)")] = 3,
    no_measure: Annotated[bool, typer.Option("--no-measure", help="theory verdict only (no weights allocated)")] = False,
    fix: Annotated[bool, typer.Option("--fix", help="recommend a fix and re-diagnose the fixed model")] = False,
    save_fixed: Annotated[Path | None, typer.Option("--save-fixed", help="write the fixed model here (save_pretrained); needs --fix")] = None,
    out: Annotated[Path, typer.Option("--out", help="output folder for diagnose.json, diagram.png, overlay.png")] = Path("sigprop-out"),
    fmt: Annotated[str, typer.Option("--format", help="text or json (stdout)")] = "text",
    device: Annotated[str, typer.Option("--device", help="where the probe runs (cpu, cuda)")] = "cpu",
    batch: Annotated[int, typer.Option("--batch", help="random sequences per seed")] = 2,
    stream: Annotated[bool | None, typer.Option(
        "--stream/--no-stream", help="measure block by block (default: when the fp32 weights exceed 2 GiB); "
        "--no-stream builds whole models, so that --fix also measures the fixed model")] = None,
) -> None:
    """Diagnose a real model's initialisation: effective Spec, support, region and verdict, measured vs predicted."""
    from sigprop.diagnose import diagnose
    from sigprop.diagnose.fix import fixed_block
    from sigprop.diagnose.resolve import parse_overrides

    if fmt not in ("text", "json"):
        raise ValueError(f"--format must be text or json; got {fmt!r}")
    if save_fixed is not None and not fix:
        raise ValueError("--save-fixed needs --fix")
    if not 1 <= seeds <= 100:
        raise ValueError(f"--seeds must be in [1, 100]; got {seeds}")
    if not 1 <= batch <= 256:
        raise ValueError(f"--batch must be in [1, 256]; got {batch}")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}: CUDA is not available here")
    diag = diagnose(target, seq_len=seq_len, depth=depth, seeds=seeds, measure=not no_measure,
                    overrides=parse_overrides(set_), batch=batch, device=device, stream=stream)
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    if diag.spec is not None and fix:
        rec = diag.recommend()
        diag.fixed = fixed_block(diag, rec, seeds=seeds, batch=batch, device=device, measure=not no_measure,
                                 stream=stream)
        if save_fixed is not None:
            diag.fixed["saved_to"] = str(_save_fixed(diag, rec, save_fixed))
    if diag.spec is not None:
        files += _plots(diag, out)
    payload = diag.to_dict()
    payload["files"] = [str(f) for f in files] + [str(out / "diagnose.json")]
    _write_json(out / "diagnose.json", payload)
    if fmt == "json":
        typer.echo(json.dumps(payload, indent=2, allow_nan=False))
        return
    typer.echo(diag.summary())
    if diag.measured:
        assert diag.predicted is not None  # diagnose() predicts before it measures
        typer.echo(_table(diag.predicted, diag.measured))
    typer.echo("wrote " + ", ".join(payload["files"]))


def _table(pred: list[dict[str, Any]], meas: list[dict[str, Any]]) -> str:
    def f(v: Any) -> str:
        return "—" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.4f}"

    lines = ["layer  ρ theory  ρ measured  H/lnT theory  H/lnT measured"]
    for p, m in zip(pred, meas, strict=False):
        lines.append(f"{p['layer']:5d}  {f(p['rho']):>8}  {f(m['rho']):>10}  {f(p['attn_entropy_norm']):>12}  "
                     f"{f(m['attn_entropy_norm']):>14}")
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    app.command("diagnose")(diagnose_cmd)
