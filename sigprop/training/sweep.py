"""Empirical trainability map: train the twin at every point of a (β, α_SA) grid and compare with the theory.

``sweep(spec, betas, alphas, TrainConfig(...), out="sweep")`` trains one model per grid point with
:func:`sigprop.training.train`, through the shared job runner (:mod:`sigprop.training.jobs`), and writes

* ``out/points/<key>.json`` — one file per finished point, written atomically (temporary file +
  ``os.replace``) as soon as that point finishes. A rerun with the same spec and training settings
  **skips** every point whose file exists (a file from different settings is retrained and replaced), so an
  interrupted sweep (Ctrl-C, a lost worker, a killed job) resumes where it stopped;
* ``out/.locks/<key>.lock`` — per-point claims (``filelock``): sweeps run at once into the same ``out``
  never train a point concurrently; a point another process is training is left for later, then
  waited for and taken from its file (counted in ``skipped``; ``ran`` counts points trained here,
  including those finished before a Ctrl-C);
* ``out/sweep.json`` — the grid, the theory's label per point (``sigprop.diagram`` on the same spec and
  grid), the measured outcome per point and the agreement (below);
* ``out/sweep.png`` — the measured loss gain as a heat map with the theory's region boundaries on top.

**Measured outcome.** ``gain = unigram_loss − final_test_loss`` (nats): how far below the unigram plateau
(the loss of predicting token frequencies only) the run ended. A point is *measured trainable* when
``gain ≥ threshold`` (default :data:`DEFAULT_THRESHOLD` = 0.3 nats, the trainer's escape margin) **and** the
run did not diverge.

**Agreement.** The theory's three labels are reduced to a binary prediction, *predicted trainable* ⇔ label
``"trainable"`` (rank collapse and entropy collapse both predict *not* trainable). The agreement fraction is
the share of finished points where predicted trainable == measured trainable. ``sweep.json`` also holds the
2×2 confusion counts, the mean gain per predicted region and a threshold-free score, ``auc`` (the
probability that a predicted-trainable point ends with a larger gain than a predicted-collapse point,
:func:`ranking_auc`), which say more than one number when the regions are unbalanced or the 0.3-nat cut
falls between close gains.

**Executors.** Points run through any ``concurrent.futures``-style executor (``submit`` → future;
:func:`sigprop.training.jobs.executor`):

* ``"local"`` (default): a ``ProcessPoolExecutor`` with ``workers`` processes (default: all cores) and
  ``cores // workers`` torch threads each; with one worker the points run in this process;
* ``"dask"``: an existing Dask cluster, ``distributed.Client(scheduler).get_executor()`` (install
  ``dask[distributed]``); every worker must be able to import sigprop and load the corpus;
* any object with ``submit(fn, *args)`` returning futures (e.g. your own executor).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from sigprop.diagram import LABELS, diagram
from sigprop.io import dumps, write_atomic
from sigprop.plot import pyplot, savefig_atomic
from sigprop.progress import bar as progress_bar
from sigprop.spec import Spec
from sigprop.training.config import TrainConfig
from sigprop.training.jobs import Job, cached_data, claim, fingerprint, read_record, run_jobs

__all__ = ["DEFAULT_THRESHOLD", "SweepResult", "sweep", "point_key", "agreement", "ranking_auc", "run_point",
           "claim_point", "plot_sweep", "POINT_FIELDS"]

#: a point counts as measured-trainable at gain ≥ this many nats below the unigram plateau (and no divergence)
DEFAULT_THRESHOLD = 0.3
#: summary.json fields copied into each point file
POINT_FIELDS = ("status", "diverged", "reason", "steps_done", "final_test_loss", "initial_test_loss",
                "best_test_loss", "unigram_loss", "steps_to_escape", "predicted_regime",
                "final_attention_entropy", "final_cosine", "rank_collapse", "entropy_collapse", "wall_s",
                "n_params", "corpus")


def point_key(beta: float, alpha_sa: float) -> str:
    """File-name key of a grid point, e.g. ``beta=0.5_alpha_sa=1.25``."""
    return f"beta={float(beta):.6g}_alpha_sa={float(alpha_sa):.6g}"


# -------------------------------------------------------------------------------------------- worker
def run_point(spec: Spec, config_dict: dict[str, Any], fp: str, key: str, beta: float, alpha_sa: float,
              data: Any = None) -> dict[str, Any]:
    """Train one grid point and return its record (the job runner writes it). Top-level (picklable) so
    process pools and Dask workers can run it; ``data`` is loaded (and cached per process) from the config
    when not given."""
    from sigprop.training.loop import train  # torch: only where a point is trained

    config = TrainConfig(**config_dict)
    result = train(spec, config, None, data=data if data is not None else cached_data(config))
    s = result.summary
    return {"key": key, "beta": float(beta), "alpha_sa": float(alpha_sa), "fingerprint": fp,
            **{k: s.get(k) for k in POINT_FIELDS},
            "test_loss_curve": [[r["step"], r["test_loss"]] for r in result.metrics]}


def claim_point(spec: Spec, config_dict: dict[str, Any], path: str, key: str, beta: float, alpha_sa: float,
                fp: str, data: Any = None, wait: bool = False) -> tuple[str, dict[str, Any] | None]:
    """Train one grid point unless another process has it (:func:`sigprop.training.jobs.claim`):
    ``("ran", record)``, ``("done", record)`` when a matching point file exists once the claim is held,
    or ``("busy", None)`` when another process holds the claim and ``wait`` is false."""
    return claim(path, fp, run_point, (spec, config_dict, fp, key, beta, alpha_sa, data), wait)


# -------------------------------------------------------------------------------------------- results
@dataclass
class SweepResult:
    """Per-point records (``points``: dicts, row-major over α then β), the agreement and the file paths."""

    spec: Spec
    betas: np.ndarray
    alphas: np.ndarray
    points: list[dict[str, Any]]
    agreement: dict[str, Any]
    threshold: float
    status: str
    ran: int
    skipped: int
    failed: list[dict[str, str]] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    diagram_kwargs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "grid": {"beta": self.betas.tolist(), "alpha_sa": self.alphas.tolist()},
            "spec": self.spec.to_dict(),
            "threshold": self.threshold,
            "theory_rule": {**_diagram_defaults(), **self.diagram_kwargs},
            "definitions": {
                "gain": "unigram_loss - final_test_loss (nats; > 0 means below the unigram plateau)",
                "measured_trainable": f"gain >= threshold ({self.threshold} nats) and the run did not diverge",
                "predicted_trainable": "theory label (sigprop.diagram, same spec and grid) == 'trainable'",
                "agreement_fraction": "share of finished points with predicted_trainable == measured_trainable",
                "auc": "P(gain of a predicted-trainable point > gain of a predicted-collapse point), ties 1/2, "
                       "diverged = -inf: threshold-free",
            },
            "agreement": self.agreement,
            "ran": self.ran,
            "skipped": self.skipped,
            "failed": self.failed,
            "points": self.points,
            "files": self.files,
        }


def _diagram_defaults() -> dict[str, Any]:
    """The keyword defaults of :func:`sigprop.diagram.diagram` (ε, entropy rule, finite T) used for the labels."""
    return {k: v.default for k, v in inspect.signature(diagram).parameters.items() if v.kind is v.KEYWORD_ONLY}


def agreement(points: Sequence[dict[str, Any]], threshold: float = DEFAULT_THRESHOLD) -> dict[str, Any]:
    """Add ``gain``, ``measured_trainable``, ``predicted_trainable``, ``agree`` to each finished point (in
    place) and return the agreement fraction, the confusion counts and the mean gain per predicted region.

    A point is finished when it has a ``final_test_loss`` or is diverged; others are ignored.
    """
    conf = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
    by_region: dict[str, list[float]] = {}
    ranked: list[tuple[bool, float]] = []
    n = agree_n = 0
    for p in points:
        loss, uni = p.get("final_test_loss"), p.get("unigram_loss")
        diverged = bool(p.get("diverged"))
        if not diverged and (loss is None or uni is None):
            continue
        gain = (uni - loss) if (loss is not None and uni is not None and math.isfinite(loss)) else None
        meas = bool(not diverged and gain is not None and gain >= threshold)
        pred = p.get("predicted") == "trainable"
        p["gain"], p["measured_trainable"], p["predicted_trainable"] = gain, meas, pred
        p["agree"] = meas == pred
        n += 1
        agree_n += p["agree"]
        conf[("t" if meas == pred else "f") + ("p" if pred else "n")] += 1
        if gain is not None:
            by_region.setdefault(str(p.get("predicted")), []).append(gain)
        ranked.append((pred, -math.inf if diverged or gain is None else gain))
    return {
        "fraction": agree_n / n if n else None,
        "n_points": n,
        "n_agree": agree_n,
        "confusion": {"predicted_trainable_and_trained": conf["tp"], "predicted_trainable_but_did_not": conf["fp"],
                      "predicted_not_but_trained": conf["fn"], "predicted_not_and_did_not": conf["tn"]},
        "mean_gain_by_predicted_region": {k: float(np.mean(v)) for k, v in sorted(by_region.items())},
        "threshold": threshold,
        "auc": ranking_auc(ranked),
    }


def ranking_auc(ranked: Sequence[tuple[bool, float]]) -> float | None:
    """Threshold-free agreement: the probability that a random predicted-trainable point ended with a larger
    gain than a random predicted-not-trainable one (ties count ½; a diverged run has gain −∞).

    This is the area under the ROC curve of "gain" as a score for the theory's binary prediction, computed
    as the Mann–Whitney U statistic / (n₁ n₀) (``scipy.stats.mannwhitneyu``). 1 = the theory's trainable
    points all beat its collapse points; 0.5 = no better than chance; ``None`` if either class is empty.
    """
    from scipy.stats import mannwhitneyu

    pos = [g for t, g in ranked if t]
    neg = [g for t, g in ranked if not t]
    if not pos or not neg:
        return None
    # a finite stand-in below every finite gain keeps the ranks, hence U, exact (and avoids inf arithmetic)
    lo = min([g for _, g in ranked if math.isfinite(g)], default=0.0) - 1.0
    fix = [lo if not math.isfinite(g) else g for g in pos], [lo if not math.isfinite(g) else g for g in neg]
    u = mannwhitneyu(fix[0], fix[1], alternative="two-sided", method="asymptotic").statistic
    return float(u) / (len(pos) * len(neg))


# -------------------------------------------------------------------------------------------- sweep
def sweep(spec: Spec, betas: ArrayLike, alphas: ArrayLike, config=None, out: str | os.PathLike = "sweep",
          *, executor: Any = "local", workers: int | None = None, scheduler: str | None = None,
          threshold: float = DEFAULT_THRESHOLD, progress: bool = False, data: Any = None, plot: bool = True,
          diagram_kwargs: dict[str, Any] | None = None) -> SweepResult:
    """Train every (β, α_SA) point (see the module docstring) and write the per-point files, sweep.json and
    sweep.png. ``data``: a prepared bundle shared by in-process points (workers in other processes load
    the corpus named by ``config`` themselves). On Ctrl-C, finished points are kept, ``sweep.json`` is
    written with status ``interrupted`` and ``KeyboardInterrupt`` is raised again.
    """
    if spec.is_grid:
        raise ValueError("sweep needs a scalar spec; the β and α_SA ranges supply the grid")
    config = config or TrainConfig()
    if config.seq_len != spec.seq_len:
        config = dataclasses.replace(config, seq_len=int(spec.seq_len))
    bs = np.asarray(betas, float).ravel()
    als = np.asarray(alphas, float).ravel()
    if bs.size < 1 or als.size < 1:
        raise ValueError("sweep needs at least one β and one α_SA")
    if not (math.isfinite(threshold) and threshold >= 0):
        raise ValueError(f"threshold must be ≥ 0; got {threshold}")
    out = Path(out)
    (out / "points").mkdir(parents=True, exist_ok=True)
    dk = diagram_kwargs or {}
    theory = diagram(spec, ("beta", bs), ("alpha_sa", als), **dk)

    local = isinstance(executor, str) and executor == "local"
    cores = os.cpu_count() or 1
    if local:
        workers = max(1, min(int(workers or cores), bs.size * als.size))
    threads = max(1, cores // max(1, workers or 1))
    cfg_dict = config.to_dict()
    if local:
        cfg_dict["threads"] = threads
    shared = data if (local and (workers or 1) <= 1) else None
    grid: list[dict[str, Any]] = []
    jobs: list[Job] = []
    for a in als:
        for b in bs:
            pt = spec.replace(beta=float(b), alpha_sa=float(a))
            key, fp = point_key(b, a), fingerprint(pt, cfg_dict)
            grid.append({"key": key, "beta": float(b), "alpha_sa": float(a), "predicted": theory.label_at(float(b), float(a)),
                         "rho_final_theory": float(theory.rho_final[len(grid) // bs.size, len(grid) % bs.size])})
            jobs.append(Job(key, run_point, (pt, cfg_dict, fp, key, float(b), float(a), shared), fp,
                            str(out / "points" / f"{key}.json")))
    done = sum(read_record(j.path, j.fingerprint) is not None for j in jobs)  # the bar starts there
    run = run_jobs(jobs, executor_kind=executor, workers=workers, scheduler=scheduler, threads=threads,
                   bar=progress_bar(progress, "sweep", len(jobs), done))
    status = "interrupted" if run.interrupted else "completed_with_failures" if run.failed else "completed"
    res = _result(spec, bs, als, grid, run, threshold, status, out, dk)
    if plot and any(p["finished"] for p in res.points):
        try:
            plot_sweep(res, out / "sweep.png", diagram_kwargs=dk)
            res.files["png"] = str(out / "sweep.png")
        except Exception as exc:  # noqa: BLE001 - the figure is an extra; the JSON says why it is missing
            res.files["png_error"] = f"{type(exc).__name__}: {exc}"
    write_atomic(out / "sweep.json", dumps(res.to_dict()) + "\n")
    if run.interrupted:
        raise KeyboardInterrupt
    return res


def _result(spec: Spec, betas: np.ndarray, alphas: np.ndarray, grid: list[dict[str, Any]], run: Any,
            threshold: float, status: str, out: Path, dk: dict[str, Any]) -> SweepResult:
    """Per-point outcome (theory label + the finished record's fields) and the agreement."""
    points = []
    for e in grid:
        rec = run.records.get(e["key"]) or {}
        p = {**e, "finished": bool(rec)}
        p.update({k: rec[k] for k in POINT_FIELDS + ("test_loss_curve",) if k in rec})
        points.append(p)
    agr = agreement(points, threshold)
    return SweepResult(spec, betas, alphas, points, agr, threshold, status, run.ran, run.skipped, run.failed,
                       {"json": str(out / "sweep.json"), "points": str(out / "points")}, dict(dk))


# -------------------------------------------------------------------------------------------- plot
def plot_sweep(res: SweepResult, path: str | os.PathLike, *, diagram_kwargs: dict[str, Any] | None = None,
               fine: int = 121):
    """Heat map of the measured gain per grid point, the theory's region boundaries (contours of the
    diagram labels on a fine grid over the same range) on top, and one marker per point: filled where the
    measurement agrees with the prediction, ✕ where the run diverged."""
    from matplotlib.colors import TwoSlopeNorm

    plt = pyplot()
    nb, na = res.betas.size, res.alphas.size
    gain = np.full((na, nb), np.nan)
    for p in res.points:
        if p.get("gain") is not None:
            gain[int(np.argmin(np.abs(res.alphas - p["alpha_sa"]))), int(np.argmin(np.abs(res.betas - p["beta"])))] = p["gain"]
    fig, ax = plt.subplots(figsize=(6.6, 5.0))
    finite = gain[np.isfinite(gain)]
    vmax = max(float(np.nanmax(np.abs(finite))) if finite.size else 1.0, res.threshold * 1.5, 1e-3)
    norm = TwoSlopeNorm(vmin=-vmax, vcenter=0.0, vmax=vmax) if finite.size and finite.min() < 0 else None
    mesh = ax.pcolormesh(res.betas, res.alphas, gain, cmap="RdBu" if norm else "Blues", norm=norm,
                         shading="nearest", vmin=None if norm else 0.0, vmax=None if norm else vmax)
    fig.colorbar(mesh, ax=ax, label="measured gain: unigram − final test loss (nats)")
    # theory boundaries on a fine grid over the same (padded) range
    def span(v):
        if v.size == 1:
            return np.linspace(v[0] * 0.5, v[0] * 1.5 + 1e-3, fine)
        h = 0.5 * (v[-1] - v[0]) / (v.size - 1)
        return np.linspace(v[0] - h, v[-1] + h, fine)

    fb, fa = span(res.betas), np.clip(span(res.alphas), 0.0, None)
    d = diagram(res.spec, ("beta", np.clip(fb, 1e-3, None)), ("alpha_sa", fa), **(diagram_kwargs or {}))
    lab = d.labels.astype(float)
    if len(np.unique(lab)) > 1:
        ax.contour(d.x_values, d.y_values, lab, levels=[0.5, 1.5], colors="k", linewidths=1.2)
    # region names at their centroids
    for code, name in LABELS.items():
        ii, jj = np.nonzero(d.labels == code)
        if ii.size:
            ax.text(d.x_values[int(jj.mean())], d.y_values[int(ii.mean())], name.replace("_", " "), fontsize=7,
                    ha="center", va="center", color="k", alpha=0.8,
                    bbox={"fc": "white", "alpha": 0.5, "lw": 0})
    for p in res.points:
        if not p.get("finished"):
            continue
        if p.get("diverged"):
            ax.plot(p["beta"], p["alpha_sa"], "x", color="k", ms=8)
        else:
            ax.plot(p["beta"], p["alpha_sa"], "o", ms=5, mec="k",
                    mfc="k" if p.get("agree") else "none")
    agr = res.agreement.get("fraction")
    s = res.spec
    ax.set_xlabel(r"$\beta$")
    ax.set_ylabel(r"$\alpha_{SA}$")
    ax.set_title(f"{s.norm}-LN L={s.depth} d={s.width} T={s.seq_len}: agreement "
                 + ("—" if agr is None else f"{agr:.2f}") + f" (threshold {res.threshold:g} nats)"
                 + ("" if res.agreement.get("auc") is None else f", ranking AUC {res.agreement['auc']:.2f}") + "\n"
                 "lines: theory boundaries; ● agrees, ○ disagrees, ✕ diverged", fontsize=8)
    fig.tight_layout()
    savefig_atomic(fig, path, dpi=120)
    plt.close(fig)
    return path
