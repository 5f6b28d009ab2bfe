"""The paper's figures, reproduced: a registry (:mod:`~sigprop.experiments.registry`) and the figure modules.

Importing the package registers every figure: the initialisation figures
(:mod:`~sigprop.experiments.reproduce`), the W_Q-gradient figure (:mod:`~sigprop.experiments.fig3c`) and the
training figures (:mod:`~sigprop.experiments.training`). None of them imports torch at import time.
"""

from sigprop.experiments import fig3c, reproduce, training
from sigprop.experiments.registry import HELP, REGISTRY, available, claim, register, write_figure

__all__ = ["HELP", "REGISTRY", "available", "claim", "fig3c", "register", "reproduce", "training", "write_figure"]
