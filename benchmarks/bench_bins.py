"""Binning error of the causal position bins (docs/theory.md §7), T = ∞ row statistics (no tables needed).

    python benchmarks/bench_bins.py [T ...]        (default: 64 128 256 512 2048 4096)

Max over 12 layers of |ρ_binned − ρ_reference| (all tokens and the last 50) for six specs — post/pre-LN ×
(α_SA, σ_v²) ∈ {(1, 0.2), (0.5, 1), (0.3, 0.2)}, β ∈ {0.3, 0.8, 1.2, 1.6, 2, 2.5, 3, 4} — against one bin per
position (T ≤ 512) or, above, a fine reference: rows 1..24 alone, then geometric bins of ratio 1.02 up to
the last 50 tokens and 10 bins over those (≈ 250 bins). The default bins must stay below 0.005.
"""

from __future__ import annotations

import math
import sys
import time

import numpy as np

from sigprop import Spec
from sigprop.theory import rows
from sigprop.theory.propagate import propagate

BETAS = np.array([0.3, 0.8, 1.2, 1.6, 2.0, 2.5, 3.0, 4.0])


def fine_edges(T: int) -> np.ndarray:
    a = T - rows.LAST_TOKENS + 1
    k = math.ceil(math.log(a / 25) / math.log(1.02))
    parts = [np.arange(1, 26), np.geomspace(25, a, k + 1), np.linspace(a, T + 1, 11)]
    return np.unique(np.round(np.concatenate(parts)).astype(np.int64))


def run(specs, T: int, reference: bool):
    default_bins = rows.causal_bins
    if reference and T > 512:
        rows.causal_bins = lambda seq_len, bins=None: fine_edges(int(seq_len))  # type: ignore[assignment]
    rows.CAUSAL_POSITIONS = T if reference and T <= 512 else None
    rows._geometry.cache_clear()
    try:
        return [propagate(s, finite_T=False) for s in specs], rows.geometry(T).size
    finally:
        rows.causal_bins = default_bins  # type: ignore[assignment]
        rows.CAUSAL_POSITIONS = None
        rows._geometry.cache_clear()


def main() -> None:
    Ts = [int(a) for a in sys.argv[1:]] or [64, 128, 256, 512, 2048, 4096]
    for T in Ts:
        specs = [Spec(depth=12, causal=True, seq_len=T, norm=n, beta=BETAS, alpha_sa=a, sigma_v2=sv)
                 for n in ("post", "pre") for a, sv in ((1.0, 0.2), (0.5, 1.0), (0.3, 0.2))]
        t = time.perf_counter()
        ref, k_ref = run(specs, T, True)
        out, k = run(specs, T, False)
        err = max(float(np.max(np.abs(o.rho - r.rho))) for o, r in zip(out, ref, strict=True))
        last = max(float(np.max(np.abs(o.rho_last - r.rho_last))) for o, r in zip(out, ref, strict=True))
        print(f"T={T:5d}  K={k:3d} (reference {k_ref:3d})  all tokens {err:.4f}  last 50 {last:.4f}  "
              f"({time.perf_counter() - t:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
