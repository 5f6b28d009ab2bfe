"""The causal propagation's heap lift (``propagate._keep_freed_heap``), measured side by side.

    python benchmarks/bench_heap.py [--n 200] [--depth 12] [--rounds 3]

A 200×200 (β, α_SA) causal diagram at L = 12, T = 512 (the one of ``bench_diagram.py --causal-only``), each
run in a fresh interpreter (the lift lasts for the process), alternating lift on / off
(``propagate.HEAP_LIFT = 0``), with one chunk thread (``propagate.THREADS = 1``) and with the default
threads. Per run: the best of 3 diagrams after a warm-up call, wall and CPU seconds and the kernel's
share (page faults). Prints the best of ``--rounds`` runs per setting and the ratio off / on.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

RUN = r"""
import json, resource, sys, time
import numpy as np
from sigprop import Spec
from sigprop.diagram import diagram
from sigprop.theory import propagate as P
n, depth, lift, threads = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "on", int(sys.argv[4])
if not lift:
    P.HEAP_LIFT = 0
if threads:
    P.THREADS = threads
spec = Spec(depth=depth, causal=True, seq_len=512)
axes = (("beta", np.linspace(0.05, 4.0, n)), ("alpha_sa", np.linspace(0.0, 3.0, n)))
diagram(spec, *axes)  # tables, allocator state
best = None
for _ in range(3):
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    diagram(spec, *axes)
    wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    rec = {"wall": wall, "user": r1.ru_utime - r0.ru_utime, "sys": r1.ru_stime - r0.ru_stime}
    best = rec if best is None or wall < best["wall"] else best
print(json.dumps(best))
"""


def one(n: int, depth: int, lift: str, threads: int) -> dict:
    out = subprocess.run([sys.executable, "-c", RUN, str(n), str(depth), lift, str(threads)], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--depth", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    for threads, name in ((1, "1 chunk thread"), (0, "default chunk threads")):
        res: dict[str, list[dict]] = {"on": [], "off": []}
        for _ in range(a.rounds):  # alternate, so that the machine's drift hits both alike
            for lift in ("on", "off"):
                res[lift].append(one(a.n, a.depth, lift, threads))
        best = {k: min(v, key=lambda r: r["wall"]) for k, v in res.items()}
        for k in ("on", "off"):
            b = best[k]
            print(f"{name}, heap lift {k:>3}: wall {b['wall']:.2f} s, CPU {b['user'] + b['sys']:.2f} s "
                  f"(kernel {b['sys']:.2f} s)")
        print(f"{name}: off / on = {best['off']['wall'] / best['on']['wall']:.2f}x wall")


if __name__ == "__main__":
    main()
