"""Training the torch twin of a :class:`~sigprop.Spec`: one run, many runs, and sweeps over (β, α_SA).

* :mod:`~sigprop.training.config` — :class:`TrainConfig` (each field declares whether it must match on
  resume and whether it changes a result) and :class:`TrainResult`; no torch.
* :mod:`~sigprop.training.loop` — :class:`Trainer` (one method per step of the loop), :func:`train`,
  :func:`load_checkpoint`, :func:`summary_lines`, :func:`plot_losses`.
* :mod:`~sigprop.training.jobs` — the one job runner (claims, resumable result files, executors) shared by
  sweeps and the training figures; no torch at import.
* :mod:`~sigprop.training.sweep` — the empirical trainability map against the theory's diagram.

The names of ``loop`` and ``sweep`` are loaded on first use, so ``import sigprop.training`` (and the
configuration) works on a core install without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from sigprop.training.config import (
    ESCAPE_MARGIN,
    EVAL_SEED,
    RESUME_KEYS,
    RUNTIME_KEYS,
    TrainConfig,
    TrainResult,
)
from sigprop.training.jobs import (
    Job,
    JobRun,
    cached_data,
    claim,
    executor,
    fingerprint,
    read_record,
    run_jobs,
)

#: public names of the torch-bound submodules, imported on first access
_LAZY = {
    "Trainer": "loop", "train": "loop", "load_checkpoint": "loop", "summary_lines": "loop", "plot_losses": "loop",
    "SweepResult": "sweep", "sweep": "sweep", "agreement": "sweep", "point_key": "sweep", "POINT_FIELDS": "sweep",
    "DEFAULT_THRESHOLD": "sweep", "plot_sweep": "sweep", "ranking_auc": "sweep",
}

__all__ = ["ESCAPE_MARGIN", "EVAL_SEED", "RESUME_KEYS", "RUNTIME_KEYS", "Job", "JobRun", "TrainConfig", "TrainResult", "cached_data", "claim", "executor",
           "fingerprint", "read_record", "run_jobs", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"sigprop.training.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'sigprop.training' has no attribute {name!r}")
