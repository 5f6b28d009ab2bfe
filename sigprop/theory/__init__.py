"""Analytic signal-propagation theory (numpy/scipy only; never imports torch).

The path of a prediction: :mod:`rows` (which keys each attention row sees, REM statistics of a row) →
:mod:`blocks` (one block of ``spec.recipe(spec)`` on the state (q, p), per position for a causal stack) →
:mod:`propagate` (L blocks, vectorised over parameter grids). :mod:`rem` and :mod:`finite` hold the
T = ∞ and exact finite-T REM statistics, :mod:`activations` the MLP kernels, :mod:`gradients` Result 2
(docs/theory.md).
"""

from sigprop.theory.blocks import attention, block, causal_attention
from sigprop.theory.propagate import Propagation, single_layer_cosine
from sigprop.theory.rem import REMStats, stats
from sigprop.theory.rows import RowGeometry, RowStats, geometry, row_stats

# (the function ``propagate`` is ``sigprop.propagate``; here the name stays the module's)
__all__ = ["Propagation", "REMStats", "RowGeometry", "RowStats", "attention", "block", "causal_attention",
           "geometry", "row_stats", "single_layer_cosine", "stats"]
