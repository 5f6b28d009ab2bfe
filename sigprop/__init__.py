"""sigprop: will this transformer initialisation train? REM signal-propagation theory (Giorlandino & Goldt,
ICLR 2026, arXiv 2505.24333) made fast, exact at finite sequence length, and checked against real PyTorch
models.

The public API is this facade. The core (spec, theory, diagram) needs only numpy and scipy; ``sigprop.nn``
and ``sigprop.measure`` need the ``torch`` extra. The bare diagram function stays
``sigprop.diagram.diagram`` (``sigprop.diagram`` is the module); :func:`report` is what most users want.
"""

from sigprop import diagnose  # the package is callable: sigprop.diagnose(target) → Diagnosis
from sigprop.diagnose import Diagnosis
from sigprop.diagram import Report, critical_alpha, recommend, recommend_from, report, verdict, where
from sigprop.spec import Spec, beta_from_std, std_from_beta
from sigprop.theory.propagate import propagate

__all__ = ["Diagnosis", "Report", "Spec", "diagnose", "beta_from_std", "critical_alpha", "propagate", "recommend",
           "recommend_from", "report", "std_from_beta", "verdict", "where"]
__version__ = "0.1.0"
