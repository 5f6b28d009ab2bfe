"""α_c at large depth (issue 10 item 8): ``sigprop propagate --depth 100000`` spent minutes in the verdict's
α_c search, four full-depth propagations. Deep searches now take one full-depth propagation over a
bracket predicted from shallower depths; the answer is checked against ρ_L itself."""

from __future__ import annotations

import math

import numpy as np
import pytest

import sigprop.diagram as D
from sigprop.spec import Spec
from sigprop.theory.propagate import propagate

#: tanh MLPs: α_c stays finite at depth 10 000 (with ReLU the MLP alone rank-collapses, α_c = ∞)
SPEC = Spec(depth=10_000, beta=0.5, rho0=0.03, activation="tanh")


@pytest.fixture()
def counted(monkeypatch):
    """Total number of blocks propagated by sigprop.diagram (one propagation costs depth blocks whatever
    the number of α in its grid)."""
    blocks: list[int] = []
    real = D.propagate

    def counting(spec, **kw):
        blocks.append(int(spec.depth))
        return real(spec, **kw)

    monkeypatch.setattr(D, "propagate", counting)
    return blocks


def _rho_L(spec: Spec, alphas, finite_T: bool) -> np.ndarray:
    return propagate(spec.replace(alpha_sa=np.asarray(alphas, float)), finite_T=finite_T, record=None).rho_final


def test_deep_alpha_c_costs_about_one_propagation(counted):
    """Regression: at L = 10 000 the search propagated 4 L blocks; now L plus the shallow searches."""
    L = SPEC.depth
    a = D.critical_alpha(SPEC, eps=0.01, finite_T=False)
    assert sum(counted) <= 1.3 * L, counted
    # the answer is the crossing of ρ_L = 1 − ε, to the documented resolution (independent propagation)
    below, at = _rho_L(SPEC, [a / (1 + 2 * D.ALPHA_RESOLUTION), a], finite_T=False)
    assert at < 0.99 <= below
    assert math.isfinite(a) and a > D.critical_alpha(SPEC.replace(depth=L // 4), eps=0.01, finite_T=False)


def test_deep_alpha_c_infinite_when_the_mlp_collapses(counted):
    """ReLU MLPs at α_MLP = 1 rank-collapse 10 000 blocks whatever α_SA: α_c = ∞, found in one propagation."""
    spec = SPEC.replace(activation="relu")
    assert D.critical_alpha(spec, eps=0.01, finite_T=False) == math.inf
    assert sum(counted) <= 1.3 * spec.depth, counted
    assert _rho_L(spec, [1e3], finite_T=False)[0] >= 0.99


def test_bracket_miss_falls_back_to_the_full_search(monkeypatch, counted):
    """A wrong prediction (crossing outside the bracket) must not give a wrong α_c."""
    spec = SPEC.replace(depth=5000)
    want = D.critical_alpha(spec, eps=0.05, finite_T=False)
    real = D._alpha_c_deep
    monkeypatch.setattr(D, "_alpha_c_deep", lambda s, L, guess, *a: real(s, L, guess * 3.0, *a))
    counted.clear()
    got = D.critical_alpha(spec, eps=0.05, finite_T=False)
    assert counted.count(spec.depth) == 2  # the bracket missed: one more propagation refined the coarse one
    assert got == pytest.approx(want, rel=2 * D.ALPHA_RESOLUTION)


def test_depth_list_mixes_shallow_and_deep():
    deep, shallow = 6000, 60
    a = D.critical_alpha(SPEC, depths=[shallow, deep], eps=0.01, finite_T=False)
    assert a[0] == pytest.approx(D.critical_alpha(SPEC.replace(depth=shallow), eps=0.01, finite_T=False))
    below, at = _rho_L(SPEC.replace(depth=deep), [a[1] / (1 + 2 * D.ALPHA_RESOLUTION), a[1]], finite_T=False)
    assert at < 0.99 <= below


def test_alpha_max_checked():
    with pytest.raises(ValueError, match="alpha_max"):
        D.critical_alpha(SPEC.replace(depth=5), alpha_max=math.inf)


@pytest.mark.slow
def test_deep_alpha_c_finite_T(counted):
    spec = SPEC.replace(depth=20_000)
    a = D.critical_alpha(spec, eps=0.01, finite_T=True)
    assert sum(counted) <= 1.3 * spec.depth, counted
    below, at = _rho_L(spec, [a / (1 + 2 * D.ALPHA_RESOLUTION), a], finite_T=True)
    assert at < 0.99 <= below
