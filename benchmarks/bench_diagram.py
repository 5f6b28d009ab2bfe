"""Trainability-diagram speed, measured side by side in one run.

    python benchmarks/bench_diagram.py [--n 200] [--depth 60] [--loop-points 200] [--dblquad-points 3]

1. a 200×200 (β, α_SA) diagram at L = 60 (post-LN, ReLU), T→∞ and finite-T theory;
2. a straightforward per-point Python loop of the same maps (scalar math, closed-form ReLU kernel),
   timed on a sample of points and scaled to the grid;
3. the same with tanh, against a per-point scipy ``dblquad`` of the MLP kernel (the authors' approach),
   timed on a few kernel evaluations and scaled to the 200×200×60 evaluations a diagram needs;
4. a causal (decoder) 200×200 (β, α_SA) diagram at L = 12, T = 512, finite T (position-resolved state in
   K = 16 position bins, docs/theory.md §7), second call (tables built; they ship for T = 512), with the pair
   state packed as its upper triangle (ours) against the straightforward full K × K pair arrays
   (``blocks.PACK_PAIRS = False``); goal ≤ 2 s (2.3–3.5 s on the shared 2-core machine, by its load).
   ``--causal-only`` runs just this part, ``--skip-causal`` all but it.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from scipy import integrate

from sigprop import Spec
from sigprop.diagram import diagram


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def scalar_block_loop(beta: float, alpha: float, depth: int, rho0: float, kernel) -> float:
    """The paper's post-LN recursion (docs/theory.md §3) for one point, in plain Python floats."""
    sw, sv, sb = 0.2, 0.2, 4e-4
    rho = rho0
    for _ in range(depth):
        bc = math.sqrt(2.0 / (1.0 - rho)) if rho < 1 else math.inf
        y = max(0.0, 1.0 - bc / beta) if beta > 0 else 0.0
        qa = rho + (1 - rho) * y
        rho1 = (sv * rho + sb + alpha**2 * rho) / (sv * qa + sb + alpha**2)
        q1 = sw + sb
        c1 = (sw * rho1 + sb) / q1
        k11, k12 = kernel(q1, c1)
        q2, p2 = sw * k11 + sb, sw * k12 + sb
        rho = (p2 + rho1) / (q2 + 1.0)
    return rho


def relu_kernel(q1: float, c: float) -> tuple[float, float]:
    c = min(1.0, max(-1.0, c))
    return q1 / 2, q1 / (2 * math.pi) * (math.sqrt(1 - c * c) + c * (math.pi - math.acos(c)))


def tanh_dblquad(q1: float, c: float) -> tuple[float, float]:
    s = math.sqrt(max(0.0, 1 - c * c))
    sq = math.sqrt(q1)
    g = lambda z: math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)  # noqa: E731
    k11 = integrate.quad(lambda z: math.tanh(sq * z) ** 2 * g(z), -10, 10)[0]
    k12 = integrate.dblquad(lambda y, x: math.tanh(sq * x) * math.tanh(sq * (c * x + s * y)) * g(x) * g(y),
                            -10, 10, -10, 10)[0]
    return k11, k12


def causal_diagram(n: int, depth: int, betas: np.ndarray, alphas: np.ndarray) -> None:
    """Causal diagram, packed pair state (ours) vs full K × K pair arrays, side by side (best of 3 each)."""
    from sigprop.theory import blocks

    spec = Spec(depth=depth, causal=True, seq_len=512)
    run = lambda: diagram(spec, ("beta", betas), ("alpha_sa", alphas))  # noqa: E731
    run()  # build the finite-T tables of the causal rows
    times, cpu = {}, {}
    for packed in (True, False):
        blocks.PACK_PAIRS = packed
        try:
            c0 = time.process_time()
            times[packed] = best_of(run)
            cpu[packed] = (time.process_time() - c0) / 3  # CPU seconds of all threads, mean of the 3 runs
        finally:
            blocks.PACK_PAIRS = True
    print(f"causal {n}x{n} diagram, L={depth}, T=512, finite T: packed pairs (ours) {times[True]:.2f} s, "
          f"full KxK pairs {times[False]:.2f} s, speed-up {times[False] / times[True]:.2f}x (goal <= 2 s); "
          f"CPU {cpu[True]:.2f} / {cpu[False]:.2f} s per run (the wall time drifts with the machine's load)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--depth", type=int, default=60)
    ap.add_argument("--loop-points", type=int, default=400)
    ap.add_argument("--dblquad-points", type=int, default=3)
    ap.add_argument("--causal-depth", type=int, default=12)
    ap.add_argument("--causal-only", action="store_true")
    ap.add_argument("--skip-causal", action="store_true")
    a = ap.parse_args()
    n, L = a.n, a.depth
    betas = np.linspace(0.05, 4.0, n)
    alphas = np.linspace(0.0, 3.0, n)
    if not a.skip_causal:
        causal_diagram(n, a.causal_depth, betas, alphas)
    if a.causal_only:
        return
    rows = []

    for act in ("relu", "tanh"):
        spec = Spec(depth=L, activation=act, rho0=0.03)
        for finite in (False, True):
            diagram(spec, ("beta", betas), ("alpha_sa", alphas), finite_T=finite)  # warm caches/tables
            t = best_of(lambda spec=spec, finite=finite: diagram(spec, ("beta", betas), ("alpha_sa", alphas),
                                                                 finite_T=finite))
            rows.append((f"{n}x{n} diagram, L={L}, {act}, {'finite T' if finite else 'T->inf'}", t))

    # per-point Python loop (ReLU, asymptotic), on a random sample of grid points, scaled to n*n
    rng = np.random.default_rng(0)
    pts = [(float(rng.choice(betas)), float(rng.choice(alphas))) for _ in range(a.loop_points)]
    t = time.perf_counter()
    for b, al in pts:
        scalar_block_loop(b, al, L, 0.03, relu_kernel)
    loop_relu = (time.perf_counter() - t) / len(pts) * n * n
    rows.append((f"per-point Python loop, relu (scaled from {len(pts)} points)", loop_relu))

    # tanh kernel by dblquad: time a few kernel evaluations and scale to n*n*L evaluations
    cs = np.linspace(0.05, 0.95, a.dblquad_points)
    t = time.perf_counter()
    for c in cs:
        tanh_dblquad(0.2004, float(c))
    per_kernel = (time.perf_counter() - t) / len(cs)
    loop_tanh = per_kernel * n * n * L
    rows.append((f"per-point dblquad, tanh (scaled from {len(cs)} kernels, {per_kernel * 1e3:.0f} ms each)", loop_tanh))

    width = max(len(r[0]) for r in rows)
    print(f"{'what':<{width}}  seconds")
    for name, sec in rows:
        print(f"{name:<{width}}  {sec:10.4f}")
    ours_relu = rows[0][1]
    ours_relu_fin = rows[1][1]
    ours_tanh = rows[2][1]
    ours_tanh_fin = rows[3][1]
    print()
    print(f"speed-up, relu T->inf diagram vs per-point Python loop: {loop_relu / ours_relu:10.0f}x  (goal >= 1000x)")
    print(f"speed-up, relu finite-T diagram vs per-point loop (T->inf maps): {loop_relu / ours_relu_fin:10.0f}x")
    print(f"speed-up, tanh T->inf diagram vs per-point dblquad:    {loop_tanh / ours_tanh:10.0f}x  (goal >= 1e4x)")
    print(f"speed-up, tanh finite-T diagram vs per-point dblquad:  {loop_tanh / ours_tanh_fin:10.0f}x")
    print(f"relu T->inf 200x200 L=60 diagram: {ours_relu * 1e3:.1f} ms (goal <= 50 ms)")

    try:
        from sigprop.theory import finite
    except ImportError:
        return
    b = np.linspace(0.05, 5.0, 40000)
    for T in (512, 4096):
        finite.moments(np.array([1.0]), T)  # build the table for T
        t = best_of(lambda T=T: finite.moments(b, T))
        print(f"finite-T Y^2 (tabled, T={T}): {t / b.size * 1e9:.0f} ns per (beta, rho, T) point over 40k points")
    bb = np.linspace(0.1, 5.0, 20)
    t = best_of(lambda: finite.moments_direct(bb, 4096), repeats=1) if hasattr(finite, "moments_direct") else float("nan")
    print(f"finite-T Y^2 (direct quadrature, T=4096): {t / bb.size * 1e3:.2f} ms per point")


if __name__ == "__main__":
    main()
