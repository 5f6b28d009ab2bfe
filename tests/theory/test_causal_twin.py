"""Causal theory (position-resolved, docs/theory.md §7) against the torch twin (sigprop.validate).

Setting of issue 12: post-LN, 6 layers, σ_v² = 1, α_SA = 0.5, Gaussian input tokens with ρ₀ = 0.03.
Fast test: d = T = 128, 3 seeds; the measured ρ of one model fluctuates by σ_seed (≈ 0.02 at this size,
taken from the run), so the seed mean is compared with 0.03 + 3 σ_seed/sqrt(seeds) (the convention of
tests/test_validate.py). Slow tests: d = T = 256, 4 seeds, the issue's bound 0.04.
Measured when written (d = T = 256, 4 seeds): β = 0.2 → 0.010 (the row-averaged theory erred by 0.10);
β = 2 → 0.077 (was 0.16; 0.15 without the key-preference weights of docs/theory.md §7). One model's ρ
in layers 4–6 fluctuates by 0.05–0.07 from seed to seed at any d, so the β = 2 case uses 40 seeds
(standard error ≈ 0.011 there): measured 0.047 at d = 256 and 512 (0.122 with uniform key weights). That
is the known error of §7: an expected failure at the issue's bound 0.04, and checked against
0.047 + 2 × 0.011 ≈ 0.07 instead.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sigprop.spec import Spec  # noqa: E402
from sigprop.validate import validate  # noqa: E402

SETTING = dict(depth=6, norm="post", causal=True, sigma_v2=1.0, alpha_sa=0.5, rho0=0.03)


def _error(spec: Spec, seeds: int) -> tuple[float, float]:
    torch.set_num_threads(min(2, torch.get_num_threads()))
    pt = validate(spec, seeds=seeds, progress=False).points[0]
    err = float(np.nanmax(np.abs(pt.theory_finite["rho"][1:] - pt.measured_mean["rho_gram"][1:])))
    return err, float(np.nanmax(pt.measured_std["rho_gram"][1:]))


def test_causal_twin_small():
    seeds = 3
    err, sigma = _error(Spec(beta=0.2, width=128, seq_len=128, **SETTING), seeds)
    assert err <= 0.03 + 3 * sigma / math.sqrt(seeds), (err, sigma)


@pytest.mark.slow
def test_causal_twin_issue_setting_low_beta():
    err, _ = _error(Spec(beta=0.2, width=256, seq_len=256, **SETTING), 4)
    assert err <= 0.04, err


@pytest.fixture(scope="module")
def high_beta_error():
    return _error(Spec(beta=2.0, width=256, seq_len=256, **SETTING), 40)[0]


@pytest.mark.slow
def test_causal_twin_issue_setting_high_beta_known_error(high_beta_error):
    assert high_beta_error <= 0.07, high_beta_error


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="condensed causal rows: known error ≈ 0.047 (40 seeds) (docs/theory.md §7)")
def test_causal_twin_issue_setting_high_beta(high_beta_error):
    assert high_beta_error <= 0.04, high_beta_error
