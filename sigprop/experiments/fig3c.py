"""Result 2 figures: W_Q gradient norms at initialisation vs β, theory curves and torch measurements
(arXiv 2505.24333, Result 2 and Fig 3c).

Theory curves come from :mod:`sigprop.theory.gradients`; measurements from
:mod:`sigprop.experiments.gradients` on the torch twin. ``sigprop gradients`` and ``sigprop reproduce fig3c``
render what these functions return.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from sigprop.experiments import gradients as E
from sigprop.experiments.registry import register
from sigprop.io import dumps, write_atomic
from sigprop.plot import pyplot, savefig_atomic
from sigprop.progress import bar as progress_bar
from sigprop.theory import gradients as G

MODE_HELP = "random: unit-norm random δ through one attention layer (the theory's setting); mlm: masked-LM-like loss on the whole stack"


def _check_sizes(seq_lens: list[int], widths: list[int], seeds: int, depth: int, mode: str) -> None:
    if not seq_lens or not widths:
        raise ValueError("seq_lens and widths need at least one value each")
    for T in seq_lens:
        if not 2 <= T <= 65536:
            raise ValueError(f"seq_lens must be in [2, 65536]; got {T}")
    for d in widths:
        if not 1 <= d <= 8192:
            raise ValueError(f"widths must be in [1, 8192]; got {d}")
    if not 1 <= seeds <= 1000:
        raise ValueError(f"seeds must be in [1, 1000]; got {seeds}")
    if not 1 <= depth <= 64:
        raise ValueError(f"depth must be in [1, 64]; got {depth}")
    if mode not in ("random", "mlm"):
        raise ValueError(f"mode must be 'random' or 'mlm'; got {mode!r}")
    if mode == "random" and depth != 1:
        raise ValueError("mode 'random' measures a single attention layer; use mode 'mlm' with depth > 1")


def theory_curves(betas: np.ndarray, seq_lens: list[int], widths: list[int], *, rho: float = 0.0, q: float = 1.0,
                  sigma_v2: float = 1.0, grad_scale: float = 1.0) -> list[dict[str, Any]]:
    """Scaled theory curves ``‖∂L/∂W_Q‖² T d⁻² (ln T)^{-1/2}`` per (T, d) with ``Σ|δ_t|² = grad_scale·d/T``."""
    out = []
    for T in seq_lens:
        for d in widths:
            kw: dict[str, Any] = dict(seq_len=T, width=d, q=q, sigma_v2=sigma_v2, grad_scale=grad_scale)
            out.append({
                "seq_len": T, "width": d, "delta2": grad_scale * d / T, "beta": betas,
                "scaled_finite": G.scaled_wq_grad(betas, rho, finite_T=True, **kw),
                "scaled_finite_width": G.scaled_wq_grad(betas, rho, finite_T=True, finite_width=True, **kw),
                "scaled_asymptotic": G.scaled_wq_grad(betas, rho, finite_T=False, **kw),
                "relative_finite": G.relative_wq_grad(betas, rho, seq_len=T, q=q),
            })
    return out


def collapse_stats(rows: list[dict[str, Any]], key: str = "scaled_wq", beta_min: float = 1.0) -> dict[str, Any]:
    """Spread of the scaled curves across (T, d) at each β: ``(max − min)/mean``; the max over β ≥ beta_min."""
    by_beta: dict[float, list[float]] = {}
    for r in rows:
        if r.get("layer", 1) == 1:
            by_beta.setdefault(float(r["beta"]), []).append(float(r[key]))
    per = []
    for b in sorted(by_beta):
        v = np.array(by_beta[b])
        spread = float((v.max() - v.min()) / v.mean()) if v.size > 1 and v.mean() > 0 else 0.0
        per.append({"beta": b, "spread": spread, "values": v.tolist()})
    hi = [p["spread"] for p in per if p["beta"] >= beta_min]
    lo_b = [p["beta"] for p in per]
    vals = {p["beta"]: float(np.mean(p["values"])) for p in per}
    return {
        "per_beta": per,
        "beta_min": beta_min,
        "max_spread_above_beta_min": float(max(hi)) if hi else None,
        "mean_spread_above_beta_min": float(np.mean(hi)) if hi else None,
        "dynamic_range_max_over_min_beta": (vals[max(lo_b)] / vals[min(lo_b)]) if lo_b and vals[min(lo_b)] > 0 else None,
    }


def run_gradients(betas: np.ndarray, seq_lens: list[int], widths: list[int], *, out: Path, measure: bool = False,
                  seeds: int = 3, mode: str = "random", depth: int = 1, rho: float = 0.0, sigma_v2: float | None = None,
                  progress: bool = True, title: str | None = None) -> dict[str, Any]:
    """Theory curves (and measurements) for every (T, d); writes ``gradients.json`` and ``gradients.png``."""
    betas = np.asarray(betas, dtype=float)
    if betas.size < 1 or np.any(~np.isfinite(betas)) or np.any(betas < 0):
        raise ValueError("β values must be finite and ≥ 0")
    if not 0.0 <= rho < 1.0:
        raise ValueError(f"rho must be in [0, 1); got {rho}")
    _check_sizes(seq_lens, widths, seeds, depth, mode)
    sv2 = (1.0 if mode == "random" else 0.2) if sigma_v2 is None else float(sigma_v2)
    if sv2 <= 0:
        raise ValueError(f"sigma_v2 must be > 0; got {sv2}")
    payload: dict[str, Any] = {
        "result": "Result 2: E‖∂L/∂W_Q‖² ≃ d β sqrt(ln T) q σ_v² (q−p)² Σ_t|δ_t|² E tr J², "
                  "T=∞: d sqrt(ln T) σ_v² q (q−p)² Σ|δ|² (β_c/3)(1−β_c/β)₊",
        "scaling": "‖∂L/∂W_Q‖² · T · d⁻² · (ln T)^(-1/2)",
        "theory_note": "theory curves use Σ_t|δ_t|² = d/T (token-averaged loss, per-token gradient² ∝ d, grad_scale=1)",
        "settings": {"seq_lens": seq_lens, "widths": widths, "rho": rho, "q": 1.0, "sigma_v2": sv2, "mode": mode,
                     "depth": depth, "seeds": seeds if measure else 0},
        "theory": theory_curves(betas, seq_lens, widths, rho=rho, sigma_v2=sv2),
    }
    if measure:
        t0 = time.time()
        n_models = len(betas) * len(seq_lens) * len(widths) * seeds
        extra: dict[str, Any] = {"rho": rho} if mode == "random" else {}
        with progress_bar(progress, "measuring ‖∂L/∂W_Q‖", n_models) as bar:
            recs = E.sweep(betas, seq_lens, widths, seeds, mode=mode, depth=depth, sigma_v2=sv2,
                           progress=lambda done, total: bar.advance(), **extra)
        summ = E.summarise(recs)
        for r in summ:
            T, d = r["seq_len"], r["width"]
            r["scaled_predicted_finite"] = E.fig3c_scaled(r["predicted_finite"], T, d)
            r["scaled_predicted_finite_width"] = E.fig3c_scaled(r["predicted_finite_width"], T, d)
        payload["records"] = recs
        payload["summary"] = summ
        payload["measure_seconds"] = time.time() - t0
        payload["collapse"] = {"measured": collapse_stats(summ),
                               "predicted_given_measured_delta": collapse_stats(summ, "scaled_predicted_finite")}
        ratios = [r["ratio_finite"] for r in summ if r["layer"] == 1 and r["beta"] >= 1.5]
        payload["ratio_measured_over_predicted_beta_ge_1.5"] = (
            {"min": float(np.min(ratios)), "max": float(np.max(ratios)), "mean": float(np.mean(ratios))} if ratios else None)
    payload["theory_collapse"] = _theory_collapse(payload["theory"])
    payload["y_label"] = y_label(measure)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "gradients.json", dumps(payload))
    _plot(payload, out / "gradients.png", title=title)
    return payload


def _theory_collapse(curves: list[dict[str, Any]], beta_min: float = 1.0) -> dict[str, Any]:
    rows = []
    for c in curves:
        for b, v in zip(np.asarray(c["beta"]), np.asarray(c["scaled_finite"]), strict=True):
            rows.append({"beta": float(b), "scaled": float(v)})
    return collapse_stats(rows, "scaled", beta_min)


def y_label(measured: bool) -> str:
    """What the gradient figure's y axis shows: the scaled gradient, and which Σ_t|δ_t|² it assumes.

    Without measurements the theory curves assume the normalisation Σ_t|δ_t|² = d/T; measured points carry
    the real loss's δ (for the MLM-like loss some 10⁴ times smaller), so the two are different quantities.
    """
    base = r"$\|\partial L/\partial W_Q\|^2\, T\, d^{-2} (\ln T)^{-1/2}$"
    if measured:
        return base + "\nmeasured (points) and theory given the measured $\\sum_t|\\delta_t|^2$ (lines)"
    return base + "\ntheory with $\\sum_t|\\delta_t|^2 = d/T$"


def _plot(payload: dict[str, Any], path: Path, title: str | None = None) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.6, 4.8))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    measured = "summary" in payload
    for i, c in enumerate(payload["theory"]):
        col = colours[i % len(colours)]
        lab = f"T={c['seq_len']}, d={c['width']}"
        key = (c["seq_len"], c["width"])
        if measured:
            rows = [r for r in payload["summary"] if (r["seq_len"], r["width"]) == key and r["layer"] == 1]
            b = np.array([r["beta"] for r in rows])
            y = np.array([r["scaled_wq"] for r in rows])
            e = E.fig3c_scaled(np.array([r["grad_wq2_sem"] for r in rows]), *key)
            ax.errorbar(b, y, yerr=np.nan_to_num(e), fmt="o", ms=4, color=col, label=f"measured {lab}")
            ax.plot(b, [r["scaled_predicted_finite"] for r in rows], "-", color=col, lw=1.2)
            ax.plot(b, [r["scaled_predicted_finite_width"] for r in rows], ":", color=col, lw=1.0)
        else:
            ax.plot(c["beta"], c["scaled_finite"], "-", color=col, label=f"finite-T theory {lab}")
            ax.plot(c["beta"], c["scaled_finite_width"], ":", color=col, lw=1.0)
    if not measured:
        c0 = payload["theory"][0]
        ax.plot(c0["beta"], c0["scaled_asymptotic"], "k--", lw=1.2, label="T→∞ theory ∝ (1−β_c/β)₊")
    ax.set_yscale("log")
    ax.set_xlabel(r"$\beta$")
    ax.set_ylabel(y_label(measured), fontsize=8)
    note = ("lines: theory given measured Σ|δ|² (solid d→∞, dotted finite-d)" if measured
            else "solid: finite-T, dotted: finite-d Gram correction")
    ax.set_title(title or f"W_Q gradient at init (Result 2)\n{note}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    savefig_atomic(fig, path, dpi=130)
    plt.close(fig)


FIG3C_CPU: dict[str, Any] = {"seq_lens": [1024, 2048], "widths": [128, 256], "betas": np.linspace(0.01, 3.0, 9), "seeds": 4}
FIG3C_FULL: dict[str, Any] = {"seq_lens": [2048, 4096], "widths": [256, 512], "betas": np.linspace(0.01, 3.0, 15), "seeds": 10}


def reproduce_fig3c(out: Path, full: bool = False, progress: bool = True) -> dict[str, Any]:
    """Fig 3c: ‖∂L/∂W_Q‖² T d⁻² (ln T)^{-1/2} vs β for a 1-layer MLM-like model, for several (T, d).

    CPU default: T ∈ {1024, 2048}, d ∈ {128, 256}, 9 β in [0.01, 3], 4 seeds (≈1 min on 2 cores; at
    T ≤ 512 the finite-T smearing keeps the curves apart by more than the seed noise);
    ``full=True``: the paper's T ∈ {2048, 4096}, d ∈ {256, 512}, 15 β, 10 seeds. Writes
    ``gradients.png`` / ``gradients.json`` under ``out``; the JSON's ``collapse`` block reports the spread of
    the scaled curves across (T, d) per β and its maximum for β ≥ 1, and ``collapses`` whether that
    maximum is below 0.25.
    """
    cfg = FIG3C_FULL if full else FIG3C_CPU
    payload = run_gradients(cfg["betas"], cfg["seq_lens"], cfg["widths"], out=out, measure=True, seeds=cfg["seeds"],
                            mode="mlm", depth=1, progress=progress,
                            title="Fig 3c reproduction (1-layer MLM-like loss)" + (" full size" if full else " CPU size"))
    spread = payload["collapse"]["measured"]["max_spread_above_beta_min"]
    payload["collapses"] = bool(spread is not None and spread < 0.25)
    payload["collapse_threshold"] = 0.25
    rel = [r["grad_wq2_sem"] / r["grad_wq2"] for r in payload["summary"]
           if r["layer"] == 1 and r["beta"] >= 1.0 and r["grad_wq2"] > 0 and r["n"] > 1]
    # spread expected from seed noise alone: E[range of 4 normals] ≈ 2.06 σ
    payload["collapse_noise"] = {
        "median_relative_sem_beta_ge_1": float(np.median(rel)) if rel else None,
        "expected_spread_from_noise": float(2.06 * np.median(rel)) if rel else None,
        "delta2_times_T_over_d": {f"T={c['seq_len']},d={c['width']}": float(np.mean(
            [r["delta2"] * r["seq_len"] / r["width"] for r in payload["summary"]
             if (r["seq_len"], r["width"]) == (c["seq_len"], c["width"]) and r["layer"] == 1]))
            for c in payload["theory"]},
    }
    payload["full"] = bool(full)
    write_atomic(Path(out) / "gradients.json", dumps(payload))
    return payload


@register("fig3c", help="‖∂L/∂W_Q‖ vs β and its (T, d) collapse (gradients module)")
def fig3c(out: Path, full: bool, seeds: int | None, progress: bool) -> dict[str, Any]:
    """Gradient ‖∂L/∂W_Q‖ vs β (:func:`reproduce_fig3c`; its seeds are fixed per size)."""
    return reproduce_fig3c(out, full=full, progress=progress)
