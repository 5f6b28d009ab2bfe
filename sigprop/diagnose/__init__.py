"""Diagnose and fix the initialisation of real models (HuggingFace ``transformers`` or any ``torch.nn.Module``).

``sigprop.diagnose(target)`` → :class:`Diagnosis`: the effective :class:`sigprop.Spec` read from the
model's weights as initialised, its support level (exact / approximate with reasons / unsupported with
why), the region and verdict of the trainability diagram, and the measured-vs-predicted check per layer.
``Diagnosis.recommend()`` and ``Diagnosis.apply(model)`` give and apply the fix. See docs/diagnose.md.

Submodules: :mod:`~sigprop.diagnose.archs` (architecture registry, :func:`register_arch`),
:mod:`~sigprop.diagnose.extract` (effective parameters), :mod:`~sigprop.diagnose.core` (:func:`diagnose`),
:mod:`~sigprop.diagnose.fix`, :mod:`~sigprop.diagnose.probe`, :mod:`~sigprop.diagnose.checkpoints`
(published configs, offline) and :mod:`~sigprop.diagnose.stream` (block-by-block measurement).
"""

import sys as _sys
import types as _types

from sigprop.diagnose import checkpoints
from sigprop.diagnose.archs import Arch, register_arch
from sigprop.diagnose.core import SUPPORT_LEVELS, Diagnosis, diagnose

__all__ = ["Arch", "Diagnosis", "SUPPORT_LEVELS", "checkpoints", "diagnose", "register_arch"]


class _CallableModule(_types.ModuleType):
    """``sigprop.diagnose`` is this package *and* the function: ``sigprop.diagnose("gpt2")`` calls
    :func:`diagnose`, while ``sigprop.diagnose.checkpoints`` etc. stay reachable as submodules."""

    def __call__(self, *args, **kwargs):
        return diagnose(*args, **kwargs)


_sys.modules[__name__].__class__ = _CallableModule
