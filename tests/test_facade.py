"""The public facade (issue 11): ``sigprop`` exports what a user needs, with ``__all__``, and importing it stays
light (no torch, transformers, typer or matplotlib), checked in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import sigprop

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "typer", "matplotlib", "rich")


def test_import_sigprop_is_light():
    code = ("import json, sys, sigprop; "
            f"print(json.dumps({{m: m in sys.modules for m in {list(HEAVY)!r}}}))")
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                         check=True)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert not any(loaded.values()), {m: v for m, v in loaded.items() if v}


def test_all_names_resolve_to_their_home_objects():
    from sigprop import diagram as diagram_module
    from sigprop import spec as spec_module
    from sigprop.theory import propagate as propagate_module
    from sigprop.theory import rem

    assert sorted(sigprop.__all__) == sorted(set(sigprop.__all__))
    for name in sigprop.__all__:
        assert getattr(sigprop, name) is not None, name
    needed = {"Spec", "propagate", "report", "recommend", "critical_alpha", "verdict", "diagnose", "Diagnosis",
              "rem_stats", "beta_from_std", "std_from_beta"}
    assert needed <= set(sigprop.__all__)
    assert sigprop.rem_stats is rem.stats and sigprop.REMStats is rem.REMStats
    assert sigprop.propagate is propagate_module.propagate
    assert sigprop.Spec is spec_module.Spec and sigprop.recipe is spec_module.recipe
    assert sigprop.report is diagram_module.report
    # the module name is not shadowed by a function: sigprop.diagram stays the module
    assert callable(diagram_module.diagram) and sigprop.diagram is diagram_module


def test_facade_round_trip():
    """β → std → β through the two facade conversions, and the facade's Spec agrees with its own std."""
    s = sigprop.Spec(beta=1.7, width=256, seq_len=128)
    std = sigprop.std_from_beta(1.7, width=256, seq_len=128)
    assert abs(s.init_std_qk - std) < 1e-15
    assert abs(sigprop.beta_from_std(std, width=256, seq_len=128) - 1.7) < 1e-12
