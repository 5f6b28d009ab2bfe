"""sigprop: will this transformer initialisation train? REM signal-propagation theory (Giorlandino & Goldt,
ICLR 2026, arXiv 2505.24333) made fast, exact at finite sequence length, and checked against real PyTorch
models.

The public API is this facade; ``import sigprop`` needs only numpy and scipy (``sigprop.nn`` and
``sigprop.measure`` need the ``torch`` extra, ``diagnose`` imports torch/transformers when it runs).

* describe an architecture: :class:`Spec` (conventions in docs/theory.md §1), :func:`beta_from_std` /
  :func:`std_from_beta` (β ↔ the std of W_Q, W_K), :func:`recipe` (the sublayers of one block);
* predict: :func:`propagate` (the state (q, ρ) through L blocks → :class:`Propagation`), :func:`rem_stats`
  (the REM statistics of one attention row, T = ∞ or exact finite T → :class:`REMStats`);
* decide: :func:`report` (what most users want → :class:`Report`), :func:`verdict`, :func:`where`,
  :func:`critical_alpha`, :func:`recommend` / :func:`recommend_from`;
* check a real model: :func:`diagnose` → :class:`Diagnosis`.

The bare diagram function stays ``sigprop.diagram.diagram`` (``sigprop.diagram`` is the module; its result
is :class:`Diagram`).
"""

from sigprop import diagnose  # the package is callable: sigprop.diagnose(target) → Diagnosis
from sigprop.diagnose import Diagnosis
from sigprop.diagram import (
    Diagram,
    Recommendation,
    Report,
    Verdict,
    critical_alpha,
    recommend,
    recommend_from,
    report,
    verdict,
    where,
)
from sigprop.spec import Spec, Sublayer, beta_from_std, recipe, std_from_beta
from sigprop.theory.propagate import Propagation, propagate
from sigprop.theory.rem import REMStats
from sigprop.theory.rem import stats as rem_stats

__all__ = ["Diagnosis", "Diagram", "Propagation", "REMStats", "Recommendation", "Report", "Spec", "Sublayer",
           "Verdict", "beta_from_std", "critical_alpha", "diagnose", "propagate", "recipe", "recommend",
           "recommend_from", "rem_stats", "report", "std_from_beta", "verdict", "where"]
__version__ = "0.1.0"
