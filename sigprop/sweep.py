"""Empirical trainability map: kept as an import path; the code lives in :mod:`sigprop.training.sweep`."""

from sigprop.training.sweep import (
    DEFAULT_THRESHOLD,
    POINT_FIELDS,
    SweepResult,
    agreement,
    claim_point,
    plot_sweep,
    point_key,
    ranking_auc,
    run_point,
    sweep,
)

__all__ = ["DEFAULT_THRESHOLD", "POINT_FIELDS", "SweepResult", "agreement", "claim_point", "plot_sweep", "point_key",
           "ranking_auc", "run_point", "sweep"]
