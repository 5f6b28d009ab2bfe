"""Training the torch twin of a spec: kept as an import path; the code lives in :mod:`sigprop.training`
(:mod:`~sigprop.training.config` and :mod:`~sigprop.training.loop`)."""

from sigprop.training.config import ESCAPE_MARGIN, EVAL_SEED, RESUME_KEYS, TrainConfig, TrainResult
from sigprop.training.loop import Trainer, load_checkpoint, plot_losses, summary_lines, train

__all__ = ["TrainConfig", "TrainResult", "Trainer", "train", "load_checkpoint", "summary_lines", "plot_losses",
           "ESCAPE_MARGIN", "EVAL_SEED", "RESUME_KEYS"]
