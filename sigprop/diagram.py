"""Trainability diagrams (arXiv 2505.24333 §5, Fig 1c): where an initialisation rank-collapses, entropy-collapses,
or trains.

The whole diagram is **one** propagation of a grid :class:`~sigprop.spec.Spec` (two fields given as
broadcasting arrays), then a classification of every point:

1. **rank collapse** if the final cosine similarity ρ_L ≥ 1 − ε (``eps``);
2. otherwise **entropy collapse** if the attention is in its condensed phase (β > β_c(ρ_{ℓ−1})) at
   the layers named by ``entropy_rule``: ``"any"`` layer (default), the ``"first"``
   layer, or at least a ``fraction`` of the layers;
3. otherwise **trainable**.

At finite T the condensation criterion stays β > β_c(ρ) (the REM transition), while ρ_ℓ itself is
propagated with finite-T statistics, which moves the rank-collapse boundary.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sigprop.io import jsonable
from sigprop.spec import ARRAY_FIELDS, Spec
from sigprop.theory import gradients as grad_theory
from sigprop.theory.propagate import propagate

TRAINABLE, RANK, ENTROPY = 0, 1, 2
LABELS = {TRAINABLE: "trainable", RANK: "rank_collapse", ENTROPY: "entropy_collapse"}
ENTROPY_RULES = ("any", "first", "fraction")

#: A point with ρ_L ≥ 1 − ε − RHO_MARGIN (but below 1 − ε) is reported as *near rank collapse*.
RHO_MARGIN = 0.05
#: A point with β ≥ (1 − BETA_MARGIN) · β_c (β_c the smallest critical β over the layers, which
#: condensation compares β with) is reported as *near entropy collapse*.
BETA_MARGIN = 0.10
#: A point with |α_SA − α_c| ≤ ALPHA_MARGIN · α_c is reported as *near the rank-collapse edge in α_SA*.
ALPHA_MARGIN = 0.10
AXIS_FIELDS = tuple(n for n in ARRAY_FIELDS if n != "sigma_bv2")


def _check_rule(eps: float, entropy_rule: str, fraction: float) -> None:
    if not (0 < eps < 1):
        raise ValueError(f"eps must be in (0, 1); got {eps}")
    if entropy_rule not in ENTROPY_RULES:
        raise ValueError(f"entropy_rule must be one of {ENTROPY_RULES}; got {entropy_rule!r}")
    if not (0 < fraction <= 1):
        raise ValueError(f"entropy_fraction must be in (0, 1]; got {fraction}")


def classify(rho_final, n_condensed, first_condensed, depth: int, *, eps: float = 0.01,
             entropy_rule: str = "any", entropy_fraction: float = 0.5) -> np.ndarray:
    """Region label per point: 0 trainable, 1 rank collapse, 2 entropy collapse (see module docstring)."""
    _check_rule(eps, entropy_rule, entropy_fraction)
    if entropy_rule == "any":
        ent = np.asarray(n_condensed) > 0
    elif entropy_rule == "first":
        ent = np.asarray(first_condensed, dtype=bool)
    else:
        ent = np.asarray(n_condensed) >= entropy_fraction * depth
    rank = np.asarray(rho_final) >= 1.0 - eps
    return np.where(rank, RANK, np.where(ent, ENTROPY, TRAINABLE)).astype(np.int8)


def _pair(a: Any, b: Any) -> tuple[int, int]:
    """The two region labels ``a``, ``b`` as a sorted pair of ints."""
    lo, hi = sorted((int(a), int(b)))
    return lo, hi


@dataclass
class Diagram:
    """A trainability diagram over two spec fields.

    ``labels[i, j]`` is the region at ``y_values[i]``, ``x_values[j]`` (0 trainable, 1 rank collapse,
    2 entropy collapse); ``rho_final`` the theory's ρ_L there. ``overlays`` holds extra boolean masks of the
    same shape (e.g. ``"grad_vanishing"``).
    """

    spec: Spec
    x_name: str
    x_values: np.ndarray
    y_name: str
    y_values: np.ndarray
    labels: np.ndarray
    rho_final: np.ndarray
    n_condensed: np.ndarray
    eps: float
    entropy_rule: str
    entropy_fraction: float
    finite_T: bool
    overlays: dict[str, np.ndarray] = field(default_factory=dict)

    def label_at(self, x: float, y: float) -> str:
        """Region name of the grid point nearest to (x, y)."""
        j = int(np.argmin(np.abs(self.x_values - x)))
        i = int(np.argmin(np.abs(self.y_values - y)))
        return LABELS[int(self.labels[i, j])]

    def fractions(self) -> dict[str, float]:
        return {name: float(np.mean(self.labels == k)) for k, name in LABELS.items()}

    def boundaries(self) -> list[dict[str, Any]]:
        """Boundary points between regions: midpoints of neighbouring grid cells with different labels.

        Returns one entry per pair of regions that touch: ``{"between": [a, b], "points": [[x, y], ...]}``.
        """
        pts: dict[tuple[int, int], list[list[float]]] = {}
        lab = self.labels
        xs, ys = self.x_values, self.y_values
        # along x
        diff = lab[:, 1:] != lab[:, :-1]
        for i, j in zip(*np.nonzero(diff), strict=True):
            key = _pair(lab[i, j], lab[i, j + 1])
            pts.setdefault(key, []).append([float(0.5 * (xs[j] + xs[j + 1])), float(ys[i])])
        diff = lab[1:, :] != lab[:-1, :]
        for i, j in zip(*np.nonzero(diff), strict=True):
            key = _pair(lab[i, j], lab[i + 1, j])
            pts.setdefault(key, []).append([float(xs[j]), float(0.5 * (ys[i] + ys[i + 1]))])
        return [
            {"between": [LABELS[a], LABELS[b]], "points": sorted(v)} for (a, b), v in sorted(pts.items())
        ]

    def to_dict(self, inline_arrays: bool = True) -> dict[str, Any]:
        """JSON-ready dict; ``inline_arrays=False`` leaves out the per-cell arrays (labels, ρ_L, overlays)."""
        out: dict[str, Any] = {
            "x": {"name": self.x_name, "values": self.x_values.tolist()},
            "y": {"name": self.y_name, "values": self.y_values.tolist()},
            "label_codes": {v: k for k, v in LABELS.items()},
            "fractions": self.fractions(),
            "boundaries": self.boundaries(),
            "rule": {
                "eps": self.eps,
                "entropy_rule": self.entropy_rule,
                "entropy_fraction": self.entropy_fraction,
                "finite_T": self.finite_T,
            },
            "spec": self.spec.to_dict(),
        }
        if inline_arrays:
            names = np.vectorize(LABELS.get)(self.labels) if self.labels.size else np.array([])
            out["labels"] = names.tolist()
            out["rho_final"] = self.rho_final.tolist()
            for k, v in self.overlays.items():
                out[k] = np.asarray(v).tolist()
        return out


def _axis(name: str, values) -> np.ndarray:
    if name not in AXIS_FIELDS:
        raise ValueError(f"diagram axis must be one of {AXIS_FIELDS}; got {name!r}")
    v = np.asarray(values, dtype=float).ravel()
    if v.size < 1:
        raise ValueError(f"{name} axis needs at least one value")
    return v


def diagram(spec: Spec, x: tuple[str, Any] = ("beta", np.linspace(0.05, 4.0, 80)),
            y: tuple[str, Any] = ("alpha_sa", np.linspace(0.0, 3.0, 80)), *, eps: float = 0.01,
            entropy_rule: str = "any", entropy_fraction: float = 0.5, finite_T: bool = True,
            progress: Callable[[int, int], None] | None = None) -> Diagram:
    """Trainability diagram of ``spec`` over fields ``x`` and ``y`` (default β × α_SA).

    ``x`` and ``y`` are ``(field_name, values)``; every other field is taken from ``spec`` (scalars).
    ``progress(layers_done, depth)`` is called as the grid's propagation goes (a causal diagram takes
    seconds: :func:`sigprop.theory.propagate.propagate`).
    """
    _check_rule(eps, entropy_rule, entropy_fraction)
    if spec.is_grid:
        raise ValueError("diagram needs a scalar spec; the axes supply the grid")
    xn, xv = x[0], _axis(x[0], x[1])
    yn, yv = y[0], _axis(y[0], y[1])
    if xn == yn:
        raise ValueError(f"diagram axes must differ; got {xn!r} twice")
    grid = spec.replace(**{xn: xv[None, :], yn: yv[:, None]})
    prop = propagate(grid, finite_T=finite_T, record=None, progress=progress)
    shape = (yv.size, xv.size)
    rho_L = np.broadcast_to(prop.rho_final, shape)
    ncond = np.broadcast_to(prop.n_condensed, shape)
    first = np.broadcast_to(prop.first_condensed, shape)
    labels = classify(rho_L, ncond, first, spec.depth, eps=eps, entropy_rule=entropy_rule,
                      entropy_fraction=entropy_fraction)
    return Diagram(spec, xn, xv, yn, yv, labels, np.array(rho_L), np.array(ncond), eps, entropy_rule,
                   entropy_fraction, finite_T)


def where(spec: Spec, *, eps: float = 0.01, entropy_rule: str = "any", entropy_fraction: float = 0.5,
          finite_T: bool = True) -> str:
    """Region name of a single (scalar) spec."""
    prop = propagate(spec, finite_T=finite_T, record=None)
    lab = classify(prop.rho_final, prop.n_condensed, prop.first_condensed, spec.depth, eps=eps,
                   entropy_rule=entropy_rule, entropy_fraction=entropy_fraction)
    return LABELS[int(np.asarray(lab).ravel()[0])]


@dataclass(frozen=True)
class Recommendation:
    """The trainable grid point farthest from every non-trainable point (axes scaled to [0, 1])."""

    spec: Spec
    x_name: str
    x: float
    y_name: str
    y: float
    margin: float
    rho_final: float

    def to_dict(self) -> dict[str, Any]:
        return {self.x_name: self.x, self.y_name: self.y, "margin": self.margin, "rho_final": self.rho_final}


def recommend_from(d: Diagram, avoid: tuple[str, ...] = ("grad_vanishing",)) -> Recommendation | None:
    """Largest-margin trainable point of an existing diagram (``None`` if no point is trainable).

    Cells flagged by any overlay named in ``avoid`` that the diagram carries (by default the region
    where W_Q gradients vanish, Result 2) count as not trainable for the recommendation.
    """
    from scipy import ndimage

    ok = d.labels == TRAINABLE
    for name in avoid:
        mask = d.overlays.get(name)
        if mask is not None and np.any(ok & ~np.asarray(mask, dtype=bool)):
            ok = ok & ~np.asarray(mask, dtype=bool)
    if not np.any(ok):
        return None
    ny, nx = ok.shape
    # distance to the nearest non-trainable cell, each axis scaled to unit length; the grid edge counts
    # as a boundary (we cannot vouch for what lies outside the diagram)
    padded = np.pad(ok, 1, constant_values=False)
    sampling = (1.0 / max(ny - 1, 1), 1.0 / max(nx - 1, 1))
    dist = ndimage.distance_transform_edt(padded, sampling=sampling)[1:-1, 1:-1]
    # near-ties (a long thin region has many cells at the same margin): take the tied cell nearest to
    # the centroid of the tied set, i.e. the middle of the safest part of the region
    score = np.where(ok, dist, -1.0)
    tied = score >= 0.95 * score.max()
    ii, jj = np.nonzero(tied)
    ci, cj = ii.mean(), jj.mean()
    k = int(np.argmin(((ii - ci) * sampling[0]) ** 2 + ((jj - cj) * sampling[1]) ** 2))
    i, j = int(ii[k]), int(jj[k])
    x, y = float(d.x_values[j]), float(d.y_values[i])
    return Recommendation(d.spec.replace(**{d.x_name: x, d.y_name: y}), d.x_name, x, d.y_name, y,
                          float(dist[i, j]), float(d.rho_final[i, j]))


def recommend(spec: Spec, x: tuple[str, Any] = ("beta", np.linspace(0.05, 4.0, 80)),
              y: tuple[str, Any] = ("alpha_sa", np.linspace(0.0, 3.0, 80)), **kwargs) -> Recommendation | None:
    """The trainable point of the (β, α_SA) diagram (or any two fields) with the largest margin."""
    return recommend_from(diagram(spec, x, y, **kwargs))


#: Depths above this find α_c with one full-depth propagation over a bracket predicted from two shallower
#: depths (see :func:`critical_alpha`); shallower ones search the whole α range (four propagations).
BRACKET_FROM_DEPTH = 4096
#: Relative resolution of α_c: the returned value is at most this far above the exact crossing.
ALPHA_RESOLUTION = 1e-3
#: α range searched without a bracket (log grid, plus α = 0)
_ALPHA_MIN = 1e-3


def critical_alpha(spec: Spec, depths=None, *, eps: float = 0.01, finite_T: bool = True,
                   alpha_max: float = 1e3) -> float | np.ndarray:
    """Critical residual strength α_c(L): the smallest α_SA with ρ_L < 1 − ε (arXiv 2505.24333 §3).

    Evaluated for every depth in ``depths`` (default: ``spec.depth``; a float for a scalar depth, an array
    for a list); ``inf`` where even ``alpha_max``
    rank-collapses, 0 where α_SA = 0 already avoids it. The value returned is the first α of a grid with
    ρ_L < 1 − ε, at most a relative :data:`ALPHA_RESOLUTION` above the crossing. For post-LN stacks α_c
    grows like sqrt(L).

    Cost: one propagation is ``L`` block evaluations whatever the number of α in it, so the search
    propagates grids of α, not one α at a time. Up to :data:`BRACKET_FROM_DEPTH` blocks: a log grid over
    [10⁻³, ``alpha_max``], then three refinements (four propagations). Deeper: α_c at L/64 and L/16 (found
    the same way, recursively) extrapolated as a power of L, α_c(L/16)·(α_c(L/16)/α_c(L/64))², gives a
    bracket of ±25 %, resolved in the same propagation as the coarse log grid (which guards against a
    wrong guess: then one more propagation refines the coarse bracket). At L = 100 000 that is about
    1.1 L block evaluations instead of 4 L.
    """
    if spec.is_grid:
        raise ValueError("critical_alpha needs a scalar spec")
    if not (0 < eps < 1):
        raise ValueError(f"eps must be in (0, 1); got {eps}")
    if not (math.isfinite(alpha_max) and alpha_max > _ALPHA_MIN):
        raise ValueError(f"alpha_max must be finite and > {_ALPHA_MIN:g}; got {alpha_max}")
    scalar = depths is None or np.ndim(depths) == 0
    depths = np.atleast_1d(np.asarray(spec.depth if depths is None else depths))
    if depths.dtype.kind not in "iu" and not np.all(depths == np.round(depths)):
        raise ValueError("depths must be integers")
    depths = depths.astype(int)
    if np.any(depths < 1) or np.any(depths > 100_000):
        raise ValueError("depths must be in [1, 100000]")
    out = _alpha_c(spec, depths, eps, finite_T, alpha_max)
    return float(out[0]) if scalar else out


def _alpha_c(spec: Spec, depths: np.ndarray, eps: float, finite_T: bool, alpha_max: float) -> np.ndarray:
    """α_c per depth: shallow depths by the full search, deep ones through a predicted bracket."""
    out = np.full(depths.shape, np.nan)
    deep = depths > BRACKET_FROM_DEPTH
    if np.any(~deep):
        out[~deep] = _alpha_c_search(spec, depths[~deep], eps, finite_T, alpha_max)
    if np.any(deep):
        d = depths[deep]
        shallow = _alpha_c(spec, np.concatenate([d // 64, d // 16]), eps, finite_T, alpha_max)
        a64, a16 = shallow[: d.size], shallow[d.size :]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            guess = a16 * (a16 / a64) ** 2
        # one propagation per distinct deep depth (usually one)
        out[deep] = [_alpha_c_deep(spec, int(L), float(g), eps, finite_T, alpha_max) for L, g in zip(d, guess, strict=True)]
    return out


def _coarse_alphas(alpha_max: float) -> np.ndarray:
    return np.concatenate([[0.0], np.geomspace(_ALPHA_MIN, alpha_max, 241)])


def _rho_final(spec: Spec, depth: int, alphas: np.ndarray, finite_T: bool) -> np.ndarray:
    return propagate(spec.replace(depth=depth, alpha_sa=alphas), finite_T=finite_T, record=None).rho_final


def _alpha_c_deep(spec: Spec, depth: int, guess: float, eps: float, finite_T: bool, alpha_max: float) -> float:
    """α_c at one large depth: one propagation over the coarse log grid together with a fine log grid over
    guess·[0.8, 1.25] (spacing :data:`ALPHA_RESOLUTION`). When the first crossing of ρ_L = 1 − ε on that
    union falls inside the fine part, that is the answer; otherwise (a wrong guess, or none) the coarse
    bracket around the crossing is refined by further propagations until the resolution is met."""
    alphas = _coarse_alphas(alpha_max)
    if math.isfinite(guess) and _ALPHA_MIN < guess < alpha_max:
        lo, hi = guess / 1.25, min(guess * 1.25, alpha_max)
        n = int(math.ceil(math.log(hi / lo) / math.log1p(ALPHA_RESOLUTION))) + 1
        alphas = np.union1d(alphas, np.geomspace(lo, hi, n))
    while True:
        ok = _rho_final(spec, depth, alphas, finite_T) < 1.0 - eps
        if not ok.any():
            return math.inf
        k = int(np.argmax(ok))
        if k == 0:
            return float(alphas[0])
        lo, hi = float(alphas[k - 1]), float(alphas[k])
        if hi <= lo * (1.0 + ALPHA_RESOLUTION) or hi <= _ALPHA_MIN:
            return hi
        n = int(math.ceil(math.log(hi / lo) / math.log1p(ALPHA_RESOLUTION))) + 1 if lo > 0 else 33
        alphas = np.geomspace(lo, hi, n) if lo > 0 else np.linspace(0.0, hi, n)


def _alpha_c_search(spec: Spec, depths: np.ndarray, eps: float, finite_T: bool, alpha_max: float) -> np.ndarray:
    """α_c per depth from one propagation over a log grid of α (recording ρ at every layer), then three
    rounds of 33-point refinement inside the brackets."""
    L = int(depths.max())
    base = spec.replace(depth=L)

    def rho_at(alphas: np.ndarray) -> np.ndarray:
        rho = propagate(base.replace(alpha_sa=alphas), finite_T=finite_T, record=("rho",)).rho
        assert rho is not None  # recorded
        return rho  # (L + 1, *alphas.shape)

    grid = _coarse_alphas(alpha_max)
    rho = rho_at(grid)[depths]  # (n_depths, n_grid)
    ok = rho < 1.0 - eps
    out = np.full(depths.shape, np.inf)
    has = ok.any(axis=1)
    first = np.argmax(ok, axis=1)
    out[has & (first == 0)] = 0.0
    todo = has & (first > 0)
    lo = np.where(todo, grid[np.maximum(first - 1, 0)], 0.0)
    hi = np.where(todo, grid[first], 0.0)
    for _ in range(3):
        if not np.any(todo):
            break
        frac = np.linspace(0.0, 1.0, 33)
        cand = lo[:, None] + (hi - lo)[:, None] * frac[None, :]  # (n_depths, 33)
        r = rho_at(cand)  # (L+1, n_depths, 33)
        r = r[depths, np.arange(depths.size)]  # (n_depths, 33)
        okc = r < 1.0 - eps
        k = np.argmax(okc, axis=1)
        k = np.where(okc.any(axis=1), np.maximum(k, 1), 32)
        lo = np.where(todo, cand[np.arange(depths.size), k - 1], lo)
        hi = np.where(todo, cand[np.arange(depths.size), k], hi)
    out[todo] = hi[todo]
    return out


# --------------------------------------------------------------------------- the full report


@dataclass(frozen=True)
class Verdict:
    """Where one scalar spec sits: its region, the boundaries it is close to, and how far it is from
    the recommended point (see :data:`RHO_MARGIN`, :data:`BETA_MARGIN`, :data:`ALPHA_MARGIN`)."""

    region: str
    rho_final: float
    beta_c: float
    alpha_c: float
    grad_vanishing: bool
    warnings: tuple[str, ...]
    text: str


def verdict(spec: Spec, *, eps: float = 0.01, entropy_rule: str = "any", entropy_fraction: float = 0.5,
            finite_T: bool = True, alpha_c: float | None = None, recommended: Recommendation | None = None,
            gradients: bool = True) -> Verdict:
    """Region of ``spec`` plus margin warnings: near rank collapse (ρ_L within :data:`RHO_MARGIN` of
    1 − ε, or α_SA within :data:`ALPHA_MARGIN` of α_c), near entropy collapse (β within
    :data:`BETA_MARGIN` of β_c), inside the vanishing-W_Q-gradient region (arXiv 2505.24333 §3), and
    the distance to ``recommended`` when given."""
    if alpha_c is None:  # first: its grid propagations build the finite-T tables the two below then reuse
        alpha_c = float(critical_alpha(spec, eps=eps, finite_T=finite_T))
    d = diagram(spec, ("beta", [spec.beta]), ("alpha_sa", [spec.alpha_sa]), eps=eps, entropy_rule=entropy_rule,
                entropy_fraction=entropy_fraction, finite_T=finite_T)
    region = LABELS[int(d.labels[0, 0])]
    rho_L = float(d.rho_final[0, 0])
    prop = propagate(spec, finite_T=finite_T, record=("beta_c",))
    bc = np.asarray(prop.beta_c, dtype=float)[1:]
    beta_c = float(np.min(bc)) if bc.size else math.inf
    gv = bool(np.asarray(grad_theory.vanishing_mask(d)).ravel()[0]) if gradients else False
    warns: list[str] = []
    if region != "rank_collapse" and rho_L >= 1.0 - eps - RHO_MARGIN:
        warns.append(f"near rank collapse: ρ_L = {rho_L:.3f} is within {RHO_MARGIN:g} of the threshold 1 − ε = {1 - eps:g}")
    if math.isfinite(alpha_c) and alpha_c > 0 and abs(float(spec.alpha_sa) - alpha_c) <= ALPHA_MARGIN * alpha_c:
        warns.append(f"near the rank-collapse edge: α_SA = {spec.alpha_sa:g} is within {ALPHA_MARGIN:.0%} of α_c = {alpha_c:.3f}")
    if region != "entropy_collapse" and math.isfinite(beta_c) and spec.beta >= (1.0 - BETA_MARGIN) * beta_c:
        warns.append(f"near entropy collapse: β = {spec.beta:.4g} is within {BETA_MARGIN:.0%} of β_c = {beta_c:.3f}")
    if gv:
        warns.append(f"inside the vanishing-gradient region: W_Q gradients vanish at β = {spec.beta:.4g} (β too small)")
    head = {"trainable": "TRAINABLE", "rank_collapse": "RANK COLLAPSE", "entropy_collapse": "ENTROPY COLLAPSE"}[region]
    if region == "trainable" and warns:
        head = "TRAINABLE, BUT AT RISK"
    lines = [f"Verdict: {head} (ρ_L = {rho_L:.3f})."]
    lines += [f"  warning: {w}." for w in warns]
    if recommended is not None:
        dx, dy = spec.beta - recommended.x, spec.alpha_sa - recommended.y
        lines.append(f"  distance from the recommended point (β = {recommended.x:.3f}, α_SA = {recommended.y:.3f}): "
                     f"Δβ = {dx:+.3f}, Δα_SA = {dy:+.3f}.")
    return Verdict(region, rho_L, beta_c, float(alpha_c), gv, tuple(warns), "\n".join(lines))


#: Grids with more cells than this keep their per-cell arrays in ``diagram.npz`` (see :meth:`Report.to_dict`).
INLINE_MAX_CELLS = 250 * 250


@dataclass
class Report:
    """Everything ``sigprop diagram`` reports: the diagram (with the gradient overlay), the region of
    your model, the recommendation, α_c, the verdict and the summary text. ``to_dict()`` is the
    ``diagram.json`` payload."""

    spec: Spec
    diagram: Diagram
    region: str
    recommended: Recommendation | None
    alpha_c: float
    verdict: Verdict
    summary: str

    @property
    def compact(self) -> bool:
        """Whether the grid is too large to inline its arrays in JSON (more than :data:`INLINE_MAX_CELLS`)."""
        return int(self.diagram.labels.size) > INLINE_MAX_CELLS

    def arrays(self) -> dict[str, np.ndarray]:
        """The per-cell arrays: ``labels`` (integer codes, legend in ``label_codes``), ``rho_final`` and
        the overlays. For a :attr:`compact` report they go to ``diagram.npz`` beside ``diagram.json``."""
        d = self.diagram
        out = {"labels": np.asarray(d.labels, dtype=np.int8), "rho_final": np.asarray(d.rho_final, dtype=float)}
        out.update({k: np.asarray(v) for k, v in d.overlays.items()})
        return out

    def to_dict(self, arrays_file: str | None = None) -> dict[str, Any]:
        """The ``diagram.json`` payload. With ``arrays_file`` (a compact report) every per-cell array is
        replaced by ``{"npz": arrays_file, "key": name, "shape": [...]}`` and stored there instead: a
        2000×2000 grid would otherwise write ~230 MB of JSON."""
        payload = self.diagram.to_dict(inline_arrays=arrays_file is None)
        if arrays_file is not None:
            for name, arr in self.arrays().items():
                payload[name] = {"npz": arrays_file, "key": name, "shape": list(arr.shape), "dtype": str(arr.dtype)}
        payload.update({"your_model": {"beta": self.spec.beta, "alpha_sa": self.spec.alpha_sa, "region": self.region},
                        "recommended": self.recommended.to_dict() if self.recommended else None,
                        "alpha_c": self.alpha_c, "summary": self.summary})
        return jsonable(payload)

    def to_json(self, arrays_file: str | None = None) -> str:
        return json.dumps(self.to_dict(arrays_file), indent=None if arrays_file else 2, allow_nan=False)


def _grid_values(name: str, values) -> np.ndarray:
    v = np.asarray(values, dtype=float).ravel()
    if v.size < 2:
        raise ValueError(f"{name} needs at least 2 points for a diagram; got {v.size}")
    return v


def report(spec: Spec, beta_grid=None, alpha_grid=None, *,
           eps: float = 0.01, entropy_rule: str = "any", entropy_fraction: float = 0.5, finite_T: bool = True,
           gradients: bool = True, progress: Callable[[int, int], None] | None = None) -> Report:
    """The whole trainability report of ``spec`` over ``beta_grid`` × ``alpha_grid`` (at least 2 points
    each): labels, the vanishing-gradient overlay (unless ``gradients=False``), the largest-margin
    recommendation (which avoids that overlay), α_c, the margin verdict and the summary text.
    ``progress``: as for :func:`diagram` (the diagram is nearly all of the time).
    Default grids: β ∈ linspace(0.05, 4, 120), α_SA ∈ linspace(0, 3, 120) (as ``sigprop diagram``)."""
    betas = _grid_values("beta_grid", np.linspace(0.05, 4.0, 120) if beta_grid is None else beta_grid)
    alphas = _grid_values("alpha_grid", np.linspace(0.0, 3.0, 120) if alpha_grid is None else alpha_grid)
    d = diagram(spec, ("beta", betas), ("alpha_sa", alphas), eps=eps, entropy_rule=entropy_rule,
                entropy_fraction=entropy_fraction, finite_T=finite_T, progress=progress)
    if gradients:
        d.overlays["grad_vanishing"] = grad_theory.vanishing_mask(d)
    rec = recommend_from(d)
    alpha_c = float(critical_alpha(spec, eps=eps, finite_T=finite_T))
    v = verdict(spec, eps=eps, entropy_rule=entropy_rule, entropy_fraction=entropy_fraction, finite_T=finite_T,
                alpha_c=alpha_c, recommended=rec, gradients=gradients)
    return Report(spec, d, v.region, rec, alpha_c, v, _summary(spec, v, rec, alpha_c, d))


def model_description(spec: Spec) -> str:
    """``post-LN, softmax attention (causal)`` etc., used in titles and summaries."""
    return f"{spec.norm}-LN, {spec.attention} attention" + (" (causal)" if spec.causal else "")


def _summary(spec: Spec, v: Verdict, rec: Recommendation | None, alpha_c: float, d: Diagram) -> str:
    from sigprop.theory.rem import beta_c_rho

    bc0 = float(beta_c_rho(spec.rho0))
    words = {
        "trainable": "TRAINABLE: it avoids both rank collapse and entropy collapse at initialisation",
        "rank_collapse": f"RANK COLLAPSE: tokens become identical with depth (ρ_L ≥ {1 - d.eps:g})",
        "entropy_collapse": "ENTROPY COLLAPSE: attention freezes on a few random keys (β above β_c)",
    }
    fr = d.fractions()
    lines = [
        f"Your model ({model_description(spec)}, {spec.activation}, L={spec.depth}, T={spec.seq_len}, "
        f"β={spec.beta:.4g}, α_SA={spec.alpha_sa:g}, α_MLP={spec.alpha_mlp:g}) is {words[v.region]}.",
        v.text,
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
