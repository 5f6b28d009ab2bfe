"""Benchmark of sigprop.theory.finite: direct quadrature vs cached tables vs a naive scipy.quad reference.

Run: /work/venv/bin/python benchmarks/bench_finite.py
All figures are measured in this one run with time.perf_counter (wall clock; noisy on a loaded machine).
"""

from __future__ import annotations

import math
import time

import numpy as np
from scipy import integrate, special

from sigprop.theory import finite

T = 1024.0
SQ = math.sqrt(math.log(T))


def quad_reference_y2(b: float, n: float) -> float:
    """Straightforward E Σ A² by nested scipy.integrate.quad in t (outer) and a (inner, twice)."""
    s = b * SQ

    def gauss_mean(f):
        return integrate.quad(lambda z: f(s * z) * math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi), -12, 12, limit=200)[0]

    def integrand(u):  # t = e^{-u}
        psi2 = gauss_mean(lambda a: math.exp(2 * (a - u) - math.exp(a - u)) if a - u < 50 else 0.0)
        g = gauss_mean(lambda a: -math.expm1(-math.exp(a - u)) if a - u < 50 else 1.0)
        return psi2 * math.exp((n - 1) * math.log1p(-min(g, 1 - 1e-16)))

    c = math.log(n) + min(s * s / 2, s * math.sqrt(2 * math.log(n)))
    return n * integrate.quad(integrand, c - 15 - 8 * s, c + 40 + 3 * s, limit=200)[0]


def timeit(fn, repeat=1):
    best = float("inf")
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    rng = np.random.default_rng(0)
    print(f"sigprop.theory.finite benchmark, T = n = {T:g}")
    print("-" * 72)

    # 1) naive reference: scipy quad per point
    bq = [0.5, 1.0, 1.5, 2.0, 3.0]
    t_quad, yq = timeit(lambda: [quad_reference_y2(b, T) for b in bq])
    per_quad = t_quad / len(bq)

    # 2) direct vectorised quadrature, per point
    bd = rng.uniform(0.0, 4.0, 200)
    t_dir, md = timeit(lambda: finite.moments_direct(bd * SQ, T))
    per_dir = t_dir / bd.size
    yd = finite.moments_direct(np.array(bq) * SQ, T).y2
    print(f"reference quad vs direct, max |Δy2| over {len(bq)} points: {np.max(np.abs(np.array(yq) - yd)):.1e}")

    # 3) tables on a 200 x 200 (β, ρ) grid
    beta = np.linspace(0.0, 5.0, 200)
    rho = np.linspace(0.0, 0.99, 200)
    B, R = np.meshgrid(beta, rho, indexing="ij")
    beff = B * np.sqrt(1.0 - R)
    finite.clear_cache()
    t0 = time.perf_counter()
    finite.moments(np.linspace(0, 1, 100), T)  # builds the moment table
    t_mt = time.perf_counter() - t0
    t0 = time.perf_counter()
    finite.overlap(np.linspace(0, 1, 100), 0.5, T)  # builds the overlap table
    t_ot = time.perf_counter() - t0
    t_m, _ = timeit(lambda: finite.moments(beff, T), repeat=20)
    t_o, _ = timeit(lambda: finite.overlap(beff, R, T), repeat=20)
    npts = beff.size
    per_tab = (t_m + t_o) / npts
    per_tab_setup = (t_m + t_o + t_mt + t_ot) / npts

    # direct cost of the same two quantities (moments + overlap) per point, on a sample
    sample = rng.integers(0, npts, 20)
    t_od, _ = timeit(lambda: finite.overlap_direct(beff.ravel()[sample] * SQ, R.ravel()[sample], T))
    per_dir_both = per_dir + t_od / sample.size

    print(f"{'method':<48}{'time/point':>14}{'speed-up vs quad':>18}")
    print(f"{'scipy.quad reference (y2 only)':<48}{per_quad * 1e3:>11.2f} ms{1.0:>18.1f}")
    print(f"{'direct quadrature, moments (all six)':<48}{per_dir * 1e3:>11.3f} ms{per_quad / per_dir:>18.0f}")
    print(f"{'direct quadrature, overlap':<48}{t_od / sample.size * 1e3:>11.3f} ms")
    print(f"{'tables, moments+overlap, excl. setup':<48}{per_tab * 1e9:>11.1f} ns{per_quad / per_tab:>18.2e}")
    print(f"{'tables, moments+overlap, incl. setup (200x200)':<48}{per_tab_setup * 1e6:>11.2f} us{per_quad / per_tab_setup:>18.2e}")
    print("-" * 72)
    print(f"table setup for n = {T:g}: moments {t_mt:.2f} s, overlap {t_ot:.2f} s")
    print(f"one call on 40,000 points: moments {t_m * 1e3:.2f} ms, overlap {t_o * 1e3:.2f} ms")
    print(f"tables vs direct (moments+overlap per point): {per_dir_both / per_tab:.2e}x faster excl. setup, "
          f"{per_dir_both / per_tab_setup:.1f}x incl. setup")
    _ = special  # scipy.special is used through finite; kept for clarity of dependencies


if __name__ == "__main__":
    main()
