"""Matplotlib figures: trainability diagrams (paper Fig 1c style) and ρ-vs-depth curves (Fig 1d / Fig 4)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

REGION_COLOURS = {0: "#4a7fc1", 1: "#e8a33d", 2: "#c8483c"}  # trainable, rank, entropy
REGION_NAMES = {0: "trainable", 1: "rank collapse", 2: "entropy collapse"}
AXIS_LABELS = {
    "beta": r"$\beta$ (query/key scale)",
    "alpha_sa": r"$\alpha_{SA}$ (attention skip strength)",
    "alpha_mlp": r"$\alpha_{MLP}$ (MLP skip strength)",
    "sigma_w2": r"$\sigma_w^2$",
    "sigma_v2": r"$\sigma_v^2$",
    "sigma_b2": r"$\sigma_b^2$",
    "rho0": r"$\rho_0$ (input cosine)",
    "q0": r"$q_0$",
}


def pyplot():
    """``matplotlib.pyplot``, on the non-interactive Agg backend unless ``MPLBACKEND`` says otherwise (so
    figures are written without a display)."""
    import matplotlib

    if os.environ.get("MPLBACKEND") is None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def savefig_atomic(fig, path: str | os.PathLike, **kwargs) -> Path:
    """Save a figure via a temporary file and ``os.replace`` so a reader never sees half a PNG."""
    from sigprop.io import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=kwargs.pop("format", None) or path.suffix.lstrip(".") or "png", **kwargs)
    return path


def finish_axes(ax, xlabel: str, ylabel: str, title: str | None = None, *, legend: int | None = 6,
                title_size: int = 9) -> None:
    """Axis labels, an optional title, a legend (font size ``legend``; ``None``: none) and a light grid."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title is not None:
        ax.set_title(title, fontsize=title_size)
    if legend is not None:
        ax.legend(fontsize=legend)
    ax.grid(alpha=0.3)


def plot_diagram(d, ax=None, *, mark: tuple[float, float] | None = None,
                 recommended: tuple[float, float] | None = None, title: str | None = None):
    """Draw a :class:`sigprop.diagram.Diagram`: regions, boundaries, optional overlays and markers."""
    plt = pyplot()
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    if ax is None:
        _, ax = plt.subplots(figsize=(6.2, 4.8))
    cmap = ListedColormap([REGION_COLOURS[k] for k in (0, 1, 2)])
    x, y = d.x_values, d.y_values
    ax.pcolormesh(x, y, d.labels, cmap=cmap, vmin=-0.5, vmax=2.5, shading="nearest", rasterized=True)
    if len(x) > 1 and len(y) > 1:
        ax.contour(x, y, d.labels, levels=[0.5, 1.5], colors="k", linewidths=0.8)
    handles = [Patch(color=REGION_COLOURS[k], label=REGION_NAMES[k]) for k in (0, 1, 2)]
    gv = d.overlays.get("grad_vanishing")
    if gv is not None and np.any(gv):
        ax.contourf(x, y, np.asarray(gv, dtype=float), levels=[0.5, 1.5], colors="none", hatches=["///"])
        handles.append(Patch(facecolor="none", hatch="///", label="vanishing W_Q gradient"))
    if mark is not None:
        ax.plot(*mark, marker="o", ms=9, mfc="white", mec="k", ls="none")
        handles.append(plt.Line2D([], [], marker="o", mfc="white", mec="k", ls="none", label="your model"))
    if recommended is not None:
        ax.plot(*recommended, marker="*", ms=14, mfc="gold", mec="k", ls="none")
        handles.append(plt.Line2D([], [], marker="*", mfc="gold", mec="k", ms=12, ls="none", label="recommended"))
    ax.set_xlabel(AXIS_LABELS.get(d.x_name, d.x_name))
    ax.set_ylabel(AXIS_LABELS.get(d.y_name, d.y_name))
    s = d.spec
    ax.set_title(title or f"{s.norm}-LN, {s.attention} attention{' (causal)' if s.causal else ''}, L={s.depth}, T={s.seq_len}"
                 + ("" if d.finite_T else " (T→∞ theory)"), fontsize=10)
    ax.legend(handles=handles, loc="upper right", fontsize=8, framealpha=0.9)
    return ax


def plot_depth(curves: Sequence[tuple[str, np.ndarray]], ax=None, *, measured: Sequence[tuple[str, np.ndarray, np.ndarray]] = (),
               ylabel: str = r"mean token cosine $\rho_\ell$", title: str | None = None):
    """ρ (or any per-layer quantity) against layer: theory lines and optional measured points ± std."""
    plt = pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(6.2, 4.2))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (label, vals) in enumerate(curves):
        ax.plot(np.arange(len(vals)), vals, color=colours[k % len(colours)], label=label)
    for k, (label, mean, std) in enumerate(measured):
        ax.errorbar(np.arange(len(mean)), mean, yerr=std, fmt="o", ms=3, capsize=2,
                    color=colours[k % len(colours)], label=label)
    ax.set_xlabel(r"layer $\ell$")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax
