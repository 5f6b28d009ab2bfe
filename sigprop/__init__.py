"""sigprop: will this transformer initialisation train? REM signal-propagation theory (Giorlandino & Goldt,
ICLR 2026) made fast, exact at finite sequence length, and checked against real PyTorch models.

The core (``sigprop.spec``, ``sigprop.theory``, ``sigprop.diagram``) needs only numpy and scipy;
``sigprop.nn`` and ``sigprop.measure`` need the ``torch`` extra.
"""

from sigprop.spec import Spec, beta_from_std, std_from_beta

__all__ = ["Spec", "beta_from_std", "std_from_beta"]
__version__ = "0.1.0"
