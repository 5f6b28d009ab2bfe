"""Check the theory against real PyTorch models: the validation harness.

:func:`validate` builds ``seeds`` fresh torch twins (:class:`sigprop.nn.TransformerStack`) of a scalar
:class:`~sigprop.spec.Spec` (or of each point of a small grid / list of specs), feeds them Gaussian tokens
with a prescribed input cosine ρ₀,

    x_t = sqrt(ρ₀) u + sqrt(1 − ρ₀) z_t,   u shared by all tokens, z_t i.i.d. N(0, I_d),

(``u`` rescaled to ``|u|² = d`` exactly and every token then rescaled to ``|x_t|² = q₀ d``, so the input q is
q₀ exactly and the input ρ is ρ₀ up to O(1/sqrt(d T)) instead of the O(ρ₀ sqrt(2/d)) fluctuation of
``|u|²``), measures every
layer with :func:`sigprop.measure.measure`, and compares with the finite-T and the asymptotic (T = ∞)
theory of :func:`sigprop.theory.propagate.propagate`.

Compared per layer (theory vs measured mean ± std over seeds):

* ``rho`` — theory ρ = p/q against the measured ``rho_gram`` (ratio of the mean off-diagonal to the mean
  diagonal Gram entry: the quantity the mean-field theory predicts); the measured mean pairwise
  ``cosine`` (the paper's plotted quantity) is reported alongside;
* ``q`` — mean squared norm per dimension;
* ``y2`` — attention ``Σ_s A_ts²`` (row average);
* ``entropy`` — attention row entropy / ln(number of keys).

For causal specs also, per layer, the ρ of the last :data:`LAST_TOKENS` tokens (``rho_last``: mean
off-diagonal over mean diagonal Gram entry among them, the decoder plots' quantity) next to the
all-token ρ, and the measured ``q`` per position (``q_pos``); the theory's values are compared when the
propagation provides them (``Propagation.rho_last``, ``Propagation.q_pos``).

Every architecture the twin builds from a :class:`~sigprop.spec.Spec` is validated the same way: a
Llama-like stack (pre-RMSNorm, SwiGLU, RoPE, grouped-query, causal) or a Pythia-like one (parallel
block, partial RoPE) is one call of :func:`validate`. The input scale is ``spec.q0`` (tokens rescaled to
``|x_t|² = q₀ d``), so a pre-LN stack can enter block 1 at the scale of its embeddings.

Errors are absolute, over layers 1..L (layer 0 is the input and is reported separately).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sigprop.progress import bar
from sigprop.spec import Spec

__all__ = ["LAST_TOKENS", "QUANTITIES", "PointReport", "ValidationReport", "gaussian_tokens", "measure_seeds",
           "validate"]

#: compared quantity → (theory field of Propagation, measured key of sigprop.measure)
QUANTITIES: dict[str, tuple[str, str]] = {
    "rho": ("rho", "rho_gram"),
    "q": ("q", "q"),
    "y2": ("y2", "attn_y2"),
    "entropy": ("entropy", "attn_entropy_norm"),
}
#: measured keys collected per layer
MEASURED_KEYS = ("rho_gram", "cosine", "q", "attn_y2", "attn_entropy_norm", "stable_rank")
#: causal specs: ρ is also reported over the last this many tokens (the decoder figure's choice)
LAST_TOKENS = 50


def gaussian_tokens(batch: int, seq_len: int, width: int, rho0: float, *, generator=None, dtype=None,
                    q0: float = 1.0):
    """``(batch, T, d)`` tokens ``sqrt(ρ₀) u + sqrt(1 − ρ₀) z_t`` with ``|u|² = d``, rescaled to ``|x_t|² = q₀ d``.

    One shared direction ``u`` per sequence; ``z_t`` i.i.d. ``N(0, I_d)``. Needs torch.
    """
    import torch

    if not 0.0 <= rho0 <= 1.0:
        raise ValueError(f"rho0 must be in [0, 1]; got {rho0}")
    if not (q0 > 0 and math.isfinite(q0)):
        raise ValueError(f"q0 must be finite and > 0; got {q0}")
    if batch < 1 or seq_len < 2 or width < 1:
        raise ValueError(f"need batch ≥ 1, seq_len ≥ 2, width ≥ 1; got {batch}, {seq_len}, {width}")
    g = generator
    u = torch.randn(batch, 1, width, generator=g, dtype=torch.float64)
    u = u * math.sqrt(width) / u.norm(dim=-1, keepdim=True)
    z = torch.randn(batch, seq_len, width, generator=g, dtype=torch.float64)
    x = math.sqrt(rho0) * u + math.sqrt(1.0 - rho0) * z
    x = x * math.sqrt(float(q0) * width) / x.norm(dim=-1, keepdim=True)
    return x.to(dtype or torch.float32)


def measure_seeds(spec: Spec, *, seeds: int = 3, batch: int = 1, rho0: float | None = None,
                  last_k: int | None = None, seed0: int = 0, progress=None, task=None,
                  positions: bool | None = None) -> dict[str, np.ndarray]:
    """Measured per-layer statistics of ``seeds`` fresh twins: ``{key: array (seeds, L + 1)}``.

    Inputs: :func:`gaussian_tokens` with cosine ``rho0`` (default ``spec.rho0``) and scale ``spec.q0``.
    ``positions`` (default: ``spec.causal``) adds ``rho_gram_last`` (ρ over the last :data:`LAST_TOKENS`
    tokens, ``(seeds, L + 1)``) and ``q_pos`` (``|x_t|²/d`` per position t, ``(seeds, L + 1, T)``).
    """
    import torch

    from sigprop.measure import measure
    from sigprop.nn import TransformerStack

    rho_in = float(spec.rho0) if rho0 is None else float(rho0)
    positions = spec.causal if positions is None else bool(positions)
    out = {k: np.full((seeds, spec.depth + 1), np.nan) for k in MEASURED_KEYS}
    if positions:
        out["rho_gram_last"] = np.full((seeds, spec.depth + 1), np.nan)
        out["q_pos"] = np.full((seeds, spec.depth + 1, spec.seq_len), np.nan)
    for s in range(seeds):
        model = TransformerStack(spec, seed=seed0 + 1000 * s + 17).eval()
        g = torch.Generator().manual_seed(seed0 + 1000 * s + 29)
        x = gaussian_tokens(batch, spec.seq_len, spec.width, rho_in, generator=g, q0=float(spec.q0))
        with _position_probe(model, x, out, s) if positions else contextlib.nullcontext():
            m = measure(model, inputs_embeds=x, last_k=last_k)
        for k in MEASURED_KEYS:
            out[k][s] = np.asarray(m[k], dtype=float)
        del model
        if progress is not None:  # sigprop.progress bar, or a rich Progress with its task
            progress.advance(task) if task is not None else progress.advance(f"seed {s + 1}/{seeds}")
    return out


@contextlib.contextmanager
def _position_probe(model, x, out: dict[str, np.ndarray], seed: int):
    """Forward hooks filling ``out["rho_gram_last"][seed]`` and ``out["q_pos"][seed]`` (layer 0 from ``x``)."""
    import torch

    from sigprop.measure import token_stats

    B, T, _ = x.shape
    last = torch.zeros(B, T, dtype=torch.bool)
    last[:, -min(LAST_TOKENS, T):] = True

    def record(layer: int, h) -> None:
        h = h.detach().to(torch.float64)
        out["rho_gram_last"][seed, layer] = token_stats(h, last)["rho_gram"]
        out["q_pos"][seed, layer] = h.pow(2).mean(-1).mean(0).numpy()

    def hook(layer: int):
        return lambda module, args, output: record(layer, output)

    record(0, x)
    handles = [blk.register_forward_hook(hook(i)) for i, blk in enumerate(model.blocks, start=1)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _errors(theory: np.ndarray, measured: np.ndarray) -> dict[str, Any]:
    err = np.abs(np.asarray(theory, float)[1:] - np.asarray(measured, float)[1:])
    ok = np.isfinite(err)
    if not ok.any():
        return {"per_layer": [None] * len(err), "max": None, "mean": None, "argmax_layer": None}
    e = np.where(ok, err, -np.inf)
    return {"per_layer": err, "max": float(err[ok].max()), "mean": float(err[ok].mean()),
            "argmax_layer": int(np.argmax(e)) + 1}


@dataclass
class PointReport:
    """Theory vs measurement for one scalar spec."""

    spec: Spec
    theory_finite: dict[str, np.ndarray]
    theory_asymptotic: dict[str, np.ndarray]
    measured_mean: dict[str, np.ndarray]
    measured_std: dict[str, np.ndarray]
    seeds: int
    batch: int
    rho_in: float
    errors: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    #: one-block theory applied to the *measured* state entering each block (separates the single-block
    #: map's error from accumulation over depth): {"finite"|"asymptotic": {"rho": (L+1,), "y2": (L+1,)}}
    one_step: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    #: causal specs: {"last_tokens": k, "rho_last": {...}, "q_pos": {...}} (see :func:`validate`)
    positions: dict[str, Any] = field(default_factory=dict)
    #: why the theory columns are NaN (the theory raised for this spec), else None
    theory_note: str | None = None

    def __post_init__(self) -> None:
        if not self.errors:
            for name, (_, mkey) in QUANTITIES.items():
                self.errors[name] = {
                    "finite": _errors(self.theory_finite[name], self.measured_mean[mkey]),
                    "asymptotic": _errors(self.theory_asymptotic[name], self.measured_mean[mkey]),
                }
            last = self.positions.get("rho_last")
            if last is not None:  # ρ of the last tokens; errors only where the theory provides it
                self.errors["rho_last"] = {
                    kind: _errors(last[f"theory_{kind}"], last["measured_mean"]) if last.get(f"theory_{kind}") is not None
                    else _errors(np.full_like(last["measured_mean"], np.nan), last["measured_mean"])
                    for kind in ("finite", "asymptotic")}

    def max_error(self, quantity: str = "rho", theory: str = "finite") -> float:
        v = self.errors[quantity][theory]["max"]
        return math.nan if v is None else float(v)

    def mean_error(self, quantity: str = "rho", theory: str = "finite") -> float:
        v = self.errors[quantity][theory]["mean"]
        return math.nan if v is None else float(v)

    def to_dict(self) -> dict[str, Any]:
        layers = list(range(self.spec.depth + 1))
        per_q = {}
        for name, (_, mkey) in QUANTITIES.items():
            per_q[name] = {
                "theory_finite": self.theory_finite[name],
                "theory_asymptotic": self.theory_asymptotic[name],
                "measured_key": mkey,
                "measured_mean": self.measured_mean[mkey],
                "measured_std": self.measured_std[mkey],
                "abs_error_finite": self.errors[name]["finite"]["per_layer"],
                "abs_error_asymptotic": self.errors[name]["asymptotic"]["per_layer"],
                "max_error_finite": self.errors[name]["finite"]["max"],
                "max_error_asymptotic": self.errors[name]["asymptotic"]["max"],
                "mean_error_finite": self.errors[name]["finite"]["mean"],
                "mean_error_asymptotic": self.errors[name]["asymptotic"]["mean"],
                "argmax_layer_finite": self.errors[name]["finite"]["argmax_layer"],
            }
        per_q["cosine"] = {"measured_mean": self.measured_mean["cosine"], "measured_std": self.measured_std["cosine"],
                           "note": "mean pairwise cosine (paper's plotted rho); theory is compared with rho_gram"}
        for kind, vals in self.one_step.items():
            for name in ("rho", "y2"):
                mkey = QUANTITIES[name][1]
                per_q[name][f"one_step_{kind}"] = vals[name]
                per_q[name][f"one_step_max_error_{kind}"] = _errors(vals[name], self.measured_mean[mkey])["max"]
        per_q["stable_rank"] = {"measured_mean": self.measured_mean["stable_rank"],
                                "measured_std": self.measured_std["stable_rank"]}
        if self.positions:
            per_q["rho_last"] = dict(self.positions["rho_last"], last_tokens=self.positions["last_tokens"],
                                     max_error_finite=self.errors["rho_last"]["finite"]["max"],
                                     max_error_asymptotic=self.errors["rho_last"]["asymptotic"]["max"])
            per_q["q_pos"] = self.positions["q_pos"]
        out = {"spec": self.spec.to_dict(), "seeds": self.seeds, "batch": self.batch, "rho_in": self.rho_in,
               "layer": layers, "quantities": per_q}
        if self.theory_note is not None:
            out["theory_note"] = self.theory_note
        return out


@dataclass
class ValidationReport:
    """Validation of one or more scalar specs (``points``); see :func:`validate`."""

    points: list[PointReport]
    settings: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> list[dict[str, Any]]:
        """One row per point and quantity: max/mean abs error of the finite-T and the T = ∞ theory."""
        rows = []
        for i, pt in enumerate(self.points):
            for name in [*QUANTITIES, *(["rho_last"] if "rho_last" in pt.errors else [])]:
                rows.append({"point": i, "beta": float(pt.spec.beta), "quantity": name,
                             "max_finite": pt.errors[name]["finite"]["max"],
                             "mean_finite": pt.errors[name]["finite"]["mean"],
                             "max_asymptotic": pt.errors[name]["asymptotic"]["max"],
                             "mean_asymptotic": pt.errors[name]["asymptotic"]["mean"]})
        return rows

    def max_error(self, quantity: str = "rho", theory: str = "finite") -> float:
        vals = [pt.max_error(quantity, theory) for pt in self.points]
        vals = [v for v in vals if math.isfinite(v)]
        return max(vals) if vals else math.nan

    def to_dict(self) -> dict[str, Any]:
        from sigprop.io import jsonable

        return jsonable({"settings": self.settings, "summary": self.summary(),
                         "max_error": {q: {"finite": self.max_error(q, "finite"),
                                           "asymptotic": self.max_error(q, "asymptotic")} for q in QUANTITIES},
                         "points": [p.to_dict() for p in self.points]})

    def write_json(self, path: str | Path) -> Path:
        from sigprop.io import dumps, write_atomic

        return write_atomic(path, dumps(self.to_dict()))

    def plot(self, path: str | Path, *, dpi: int = 120) -> Path:
        """PNG: four panels (ρ, q, Y², entropy/ln T) — finite-T theory solid, T = ∞ dashed, measured ± std."""
        from sigprop.plot import pyplot, savefig_atomic

        fig = self.figure()
        out = savefig_atomic(fig, path, dpi=dpi)
        pyplot().close(fig)
        return out

    def figure(self):
        """The matplotlib figure of :meth:`plot` (no offset axes: a flat q ≈ 1 reads as 1, not 1e-6 + 1)."""
        from sigprop.plot import pyplot

        plt = pyplot()
        fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
        colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        labels = {"rho": r"$\rho_\ell$ (theory vs measured $\rho_{gram}$; x = mean cosine)",
                  "q": r"$q_\ell$", "y2": r"attention $Y^{(2)}$", "entropy": r"attention entropy / $\ln T$"}
        for ax, name in zip(axes.ravel(), QUANTITIES, strict=True):
            mkey = QUANTITIES[name][1]
            for k, pt in enumerate(self.points):
                c = colours[k % len(colours)]
                L = np.arange(pt.spec.depth + 1)
                lab = _point_label(pt.spec)
                ax.plot(L, pt.theory_finite[name], color=c, lw=1.5, label=f"{lab} finite-T")
                ax.plot(L, pt.theory_asymptotic[name], color=c, lw=1.0, ls="--", label=f"{lab} T=∞")
                ax.errorbar(L, pt.measured_mean[mkey], yerr=pt.measured_std[mkey], fmt="o", ms=3, capsize=2,
                            color=c, label=f"{lab} measured")
                if name == "rho":
                    ax.plot(L, pt.measured_mean["cosine"], "x", ms=4, color=c)
                    last = pt.positions.get("rho_last")
                    if last is not None:  # causal: ρ of the last tokens
                        k = pt.positions["last_tokens"]
                        ax.plot(L, last["measured_mean"], "+", ms=6, color=c, label=f"{lab} measured, last {k}")
                        if last.get("theory_finite") is not None:
                            ax.plot(L, last["theory_finite"], color=c, lw=1.0, ls=":", label=f"{lab} last {k}")
            ax.set_xlabel(r"layer $\ell$")
            ax.ticklabel_format(axis="y", useOffset=False)
            _min_span(ax)
            ax.set_title(labels[name], fontsize=9)
            ax.grid(alpha=0.3)
        axes[0, 0].legend(fontsize=7)
        s = self.points[0].spec
        fig.suptitle(f"validation: {_arch_label(s)}, d={s.width}, T={s.seq_len}, L={s.depth}, "
                     f"{self.points[0].seeds} seeds", fontsize=10)
        fig.tight_layout()
        return fig


def _min_span(ax, rel: float = 0.02) -> None:
    """Widen a y axis whose data span is below ``rel`` of its level, so agreement does not look like noise."""
    lo, hi = ax.get_ylim()
    mid, half = 0.5 * (lo + hi), 0.5 * (hi - lo)
    want = rel * max(abs(mid), 1e-12)
    if half < want:
        ax.set_ylim(mid - want, mid + want)


def _arch_label(s: Spec) -> str:
    """``post-LN softmax`` for the paper's block; the real-architecture pieces appended when present."""
    parts = [f"{s.norm}-{'RMS' if s.norm_type == 'rmsnorm' else 'LN'}", s.attention]
    if s.block == "parallel":
        parts.insert(0, "parallel")
    if s.causal:
        parts.append("causal")
    if s.gated:
        parts.append(str(s.activation))
    if s.rope_fraction > 0:
        parts.append(f"RoPE {s.rope_fraction:g}")
    if s.kv_heads is not None and s.kv_heads != s.heads:
        parts.append(f"GQA {s.heads}/{s.kv_heads}")
    if s.window is not None:
        parts.append(f"window {s.window}")
    return " ".join(parts)


def _point_label(spec: Spec) -> str:
    return f"β={float(spec.beta):g}, α={float(spec.alpha_sa):g}"


def _theory(spec: Spec, finite_T: bool, rho_in: float) -> dict[str, Any]:
    """Theory per layer from the twins' input state (ρ₀ = ``rho_in``, q₀ = ``spec.q0``); for causal specs also
    ``rho_last`` and ``q_pos`` when the propagation provides them."""
    from sigprop.theory.propagate import propagate

    pr = propagate(spec.replace(rho0=rho_in), finite_T=finite_T)
    out = {"rho": np.asarray(pr.rho, float), "q": np.asarray(pr.q, float), "y2": np.asarray(pr.y2, float),
           "entropy": np.asarray(pr.entropy, float)}
    for name in ("rho_last", "q_pos", "positions"):
        v = getattr(pr, name, None) if spec.causal else None
        if v is not None:
            out[name] = np.asarray(v, float)
    return out


def _no_theory(depth: int) -> dict[str, np.ndarray]:
    return {name: np.full(depth + 1, np.nan) for name in QUANTITIES}


def _positions(meas: dict[str, np.ndarray], th_f: dict[str, Any], th_a: dict[str, Any],
               seq_len: int) -> dict[str, Any]:
    """The causal report: ρ of the last tokens and q per position, measured (mean ± std over seeds) and,
    where the propagation provides them, in theory. The theory's ``q_pos`` is per position bin
    (:func:`sigprop.theory.rows.causal_bins`); it is compared with the measured q averaged over each bin."""
    if "rho_gram_last" not in meas:
        return {}
    last = {"measured_mean": _nanmean(meas["rho_gram_last"]), "measured_std": _nanstd(meas["rho_gram_last"]),
            "theory_finite": th_f.get("rho_last"), "theory_asymptotic": th_a.get("rho_last"),
            "note": "mean off-diagonal / mean diagonal Gram entry over the last tokens of each sequence"}
    qm = _nanmean(meas["q_pos"])
    qpos: dict[str, Any] = {"measured_mean": qm, "measured_std": _nanstd(meas["q_pos"]),
                            "position": np.arange(1, seq_len + 1)}
    binned = None
    for kind, th in (("finite", th_f), ("asymptotic", th_a)):
        v = th.get("q_pos")
        qpos[f"theory_{kind}"] = v
        if v is None:
            continue
        if binned is None:
            binned = _bin_positions(qm, seq_len, v.shape[-1])
            qpos["bin_positions"] = th.get("positions")
            qpos["measured_binned"] = binned
        if binned is not None:
            rel = np.abs(v[1:] - binned[1:]) / np.maximum(np.abs(binned[1:]), 1e-300)
            qpos[f"max_rel_error_{kind}"] = float(np.nanmax(rel)) if np.isfinite(rel).any() else None
    return {"last_tokens": min(LAST_TOKENS, seq_len), "rho_last": last, "q_pos": qpos}


def _bin_positions(q_pos: np.ndarray, seq_len: int, bins: int) -> np.ndarray | None:
    """Measured ``q_pos`` ``(L + 1, T)`` averaged over the theory's position bins, ``(L + 1, K)``; ``None`` if
    the theory's bins are not ``causal_bins(seq_len)`` (the default scheme)."""
    from sigprop.theory.rows import causal_bins

    edges = causal_bins(seq_len)
    if edges.size - 1 != bins:
        return None
    return np.stack([q_pos[:, lo - 1: hi - 1].mean(-1) for lo, hi in zip(edges[:-1], edges[1:], strict=True)], -1)


def _one_step(spec: Spec, meas: dict[str, np.ndarray], finite_T: bool) -> dict[str, np.ndarray]:
    """Block ℓ of the theory applied to the measured (q, ρ_gram) of layer ℓ−1, averaged over seeds."""
    from sigprop.theory import blocks

    q = np.asarray(meas["q"][:, :-1], float)
    p = q * np.asarray(meas["rho_gram"][:, :-1], float)
    ok = np.isfinite(q) & np.isfinite(p)
    q, p = np.where(ok, q, 1.0), np.where(ok, p, 0.0)
    out = blocks.block(q, p, spec, finite_T=finite_T)
    rho = np.where(ok, np.asarray(out.p) / np.asarray(out.q), np.nan)
    y2 = np.where(ok, np.broadcast_to(out.attn.y2, q.shape), np.nan)
    pad = np.full((1,), np.nan)
    return {"rho": np.concatenate([pad, np.nanmean(rho, 0)]), "y2": np.concatenate([pad, np.nanmean(y2, 0)])}


def _as_points(spec_or_grid: Spec | Iterable[Spec], width: int | None, heads: int | None) -> list[Spec]:
    if isinstance(spec_or_grid, Spec):
        specs = [spec_or_grid.point(i) for i in np.ndindex(spec_or_grid.shape)] if spec_or_grid.is_grid else [spec_or_grid]
    elif isinstance(spec_or_grid, (list, tuple)):
        specs = list(spec_or_grid)
        if not specs or not all(isinstance(s, Spec) for s in specs):
            raise ValueError("validate needs a Spec or a non-empty list of Specs")
        specs = [p for s in specs for p in _as_points(s, None, None)]
    else:
        raise ValueError(f"validate needs a Spec or a list of Specs; got {type(spec_or_grid).__name__}")
    if len(specs) > 64:
        raise ValueError(f"validate runs real models; a grid of {len(specs)} points is too large (≤ 64)")
    changes: dict[str, Any] = {}
    if width is not None:
        changes["width"] = width
    if heads is not None:
        changes["heads"] = heads
    return [s.replace(**changes) if changes else s for s in specs]


def validate(spec_or_grid: Spec | Sequence[Spec], *, width: int | None = None, heads: int | None = None,
             seeds: int = 3, batch: int = 1, rho0: float | None = None, last_k: int | None = None,
             progress: bool = True) -> ValidationReport:
    """Measure ``seeds`` fresh torch twins per spec point and compare every layer with the theory.

    Parameters
    ----------
    spec_or_grid : scalar Spec, grid Spec (≤ 64 points) or list of Specs.
    width, heads : override ``spec.width`` / ``spec.heads`` for the twin (the theory does not depend on them).
    seeds : fresh models (and input draws) per point. batch : input sequences per model.
    rho0 : input cosine (default ``spec.rho0``); the theory starts from the same value and from q₀ = ``spec.q0``
        (the scale of the input tokens).
    last_k : restrict token statistics to the last k tokens (decoder, docs/theory.md §7).
    progress : the progress bar (:func:`sigprop.progress.bar`, on stderr) over (point, seed).
    """
    if not isinstance(seeds, (int, np.integer)) or isinstance(seeds, bool) or seeds < 1:
        raise ValueError(f"seeds must be an integer ≥ 1; got {seeds!r}")
    if not isinstance(batch, (int, np.integer)) or isinstance(batch, bool) or batch < 1:
        raise ValueError(f"batch must be an integer ≥ 1; got {batch!r}")
    if rho0 is not None and not (0.0 <= float(rho0) <= 1.0):
        raise ValueError(f"rho0 must be in [0, 1]; got {rho0}")
    if width is not None and (not isinstance(width, (int, np.integer)) or width < 2):
        raise ValueError(f"width must be an integer ≥ 2; got {width!r}")
    points = _as_points(spec_or_grid, width, heads)
    work = sum(seeds for _ in points)
    reports = []
    with bar(progress, "validating (twins × seeds)", work) as prog:
        for spec in points:
            rho_in = float(spec.rho0) if rho0 is None else float(rho0)
            meas = measure_seeds(spec, seeds=seeds, batch=batch, rho0=rho_in, last_k=last_k,
                                 progress=prog)
            mean = {k: _nanmean(meas[k]) for k in MEASURED_KEYS}
            std = {k: (_nanstd(meas[k]) if seeds > 1 else np.zeros(meas[k].shape[1])) for k in MEASURED_KEYS}
            try:
                th_f, th_a = _theory(spec, True, rho_in), _theory(spec, False, rho_in)
                one = {"finite": _one_step(spec, meas, True), "asymptotic": _one_step(spec, meas, False)}
                note = None
            except (ValueError, NotImplementedError) as exc:  # a piece the theory does not model (yet)
                th_f = th_a = _no_theory(spec.depth)
                one, note = {}, f"no theory for this spec: {exc}"
            reports.append(PointReport(spec=spec, theory_finite=th_f, theory_asymptotic=th_a,
                                       measured_mean=mean, measured_std=std, seeds=seeds, batch=batch,
                                       rho_in=rho_in, one_step=one, theory_note=note,
                                       positions=_positions(meas, th_f, th_a, spec.seq_len)))
    settings = {"seeds": seeds, "batch": batch, "rho0": rho0, "last_k": last_k, "n_points": len(points),
                "inputs": "x_t = sqrt(rho0) u + sqrt(1-rho0) z_t, |u|^2 = d, each token rescaled to |x_t|^2 = q0 d",
                "rho_compared": "theory p/q vs measured rho_gram (mean off-diagonal / mean diagonal Gram entry)"}
    return ValidationReport(points=reports, settings=settings)


def _nanmean(v: np.ndarray) -> np.ndarray:
    ok = np.isfinite(v)
    n = ok.sum(0)
    return np.where(n > 0, np.where(ok, v, 0.0).sum(0) / np.maximum(n, 1), np.nan)


def _nanstd(v: np.ndarray) -> np.ndarray:
    m = _nanmean(v)
    ok = np.isfinite(v)
    n = ok.sum(0)
    return np.where(n > 0, np.sqrt(np.where(ok, (v - m) ** 2, 0.0).sum(0) / np.maximum(n, 1)), np.nan)
