"""Propagate the token state (q, p) through a whole stack (docs/theory.md §3, §5).

:func:`propagate` applies :func:`sigprop.theory.blocks.block` ``L`` times to arrays, so a grid ``Spec``
(e.g. β × α_SA for a diagram) is one propagation, not a Python loop over points.
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sigprop.spec import Spec
from sigprop.theory import blocks, rem, rows

#: per-layer fields a :class:`Propagation` can hold
FIELDS = ("rho", "q", "log_q", "y2", "entropy", "beta_c", "condensed")


@dataclass
class Propagation:
    """Per-layer theory of a stack.

    Arrays have shape ``(L + 1, *spec.shape)``; index ℓ = 0 is the input state (ρ₀, q₀), index ℓ ≥ 1 the
    output of block ℓ. Attention quantities (``y2``, ``entropy``, ``beta_c``, ``condensed``) at index ℓ
    describe the attention of block ℓ (NaN/False at ℓ = 0).

    * ``rho`` — mean token cosine similarity ρ_ℓ = p/q;
    * ``q`` — mean squared norm per dimension (``inf`` if it exceeds the float range);
    * ``log_q`` — ln q, always finite (pre-LN streams with α > 1 grow like α^{2ℓ});
    * ``y2`` — E Σ_s A_ts² of block ℓ (row average; 1/``y2`` keys are attended);
    * ``entropy`` — mean attention-row Shannon entropy / ln(keys);
    * ``beta_c`` — β_c of the attention input of block ℓ;
    * ``condensed`` — β > β_c at block ℓ (entropy-collapse phase of the T = ∞ theory).

    ``n_condensed`` counts the condensed layers; ``first_condensed`` is ``condensed[1]``. They are kept
    even when the per-layer arrays are not recorded.

    Recorded with ``rho`` (docs/theory.md §7): ``rho_last`` — ρ over the pairs of the last 50 tokens
    (:data:`sigprop.theory.rows.LAST_TOKENS`; equal to ``rho`` for an encoder); ``q_pos`` — q per position,
    shape ``(L + 1, *spec.shape, K)`` at the representative ``positions`` (K,) of the position bins of a
    causal stack (one bin, position (T+1)/2, for an encoder).
    """

    spec: Spec
    finite_T: bool
    rho: np.ndarray | None = None
    q: np.ndarray | None = None
    log_q: np.ndarray | None = None
    y2: np.ndarray | None = None
    entropy: np.ndarray | None = None
    beta_c: np.ndarray | None = None
    condensed: np.ndarray | None = None
    rho_final: np.ndarray = field(default_factory=lambda: np.array(np.nan))
    log_q_final: np.ndarray = field(default_factory=lambda: np.array(np.nan))
    n_condensed: np.ndarray = field(default_factory=lambda: np.array(0))
    first_condensed: np.ndarray = field(default_factory=lambda: np.array(False))
    rho_last: np.ndarray | None = None
    q_pos: np.ndarray | None = None
    positions: np.ndarray | None = None

    @property
    def depth(self) -> int:
        return self.spec.depth

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict: ``layer`` plus every recorded field as (nested) lists."""
        out: dict[str, Any] = {"layer": list(range(self.depth + 1)), "finite_T": self.finite_T}
        extra = ("rho_last", "q_pos", "positions") if not self.spec.is_grid else ("rho_last",)
        for name in FIELDS + extra:
            v = getattr(self, name)
            if v is not None:
                arr = np.asarray(v)
                if arr.dtype == bool:
                    out[name] = arr.tolist()
                else:
                    out[name] = [None if not np.isfinite(x) else float(x) for x in arr.ravel()] if arr.ndim == 1 else np.where(np.isfinite(arr), arr, np.nan).tolist()
        return out

    def to_frame(self) -> Any:
        """A tidy ``pandas.DataFrame`` (one row per layer and grid point); needs pandas."""
        try:
            import pandas as pd
        except ImportError as exc:  # pragma: no cover - depends on environment
            raise ImportError("to_frame needs pandas: pip install pandas") from exc
        shape = self.spec.shape
        idx = np.indices(shape).reshape(len(shape), -1) if shape else np.zeros((0, 1), dtype=int)
        cols: dict[str, Any] = {}
        n_pts = idx.shape[1]
        cols["layer"] = np.repeat(np.arange(self.depth + 1), n_pts)
        for k, axis in enumerate(shape):
            del axis
            cols[f"i{k}"] = np.tile(idx[k], self.depth + 1)
        for name in FIELDS:
            v = getattr(self, name)
            if v is not None:
                cols[name] = np.asarray(v).reshape(self.depth + 1, -1).ravel()
        return pd.DataFrame(cols)


def propagate(spec: Spec, *, finite_T: bool = True, record: tuple[str, ...] | None = FIELDS,
              progress: Callable[[int, int], None] | None = None) -> Propagation:
    """Theory of ``spec`` through its ``depth`` blocks.

    Parameters
    ----------
    spec : a :class:`~sigprop.spec.Spec`; array fields broadcast (a grid is one propagation).
    finite_T : exact finite-T REM statistics with T = ``spec.seq_len`` (default; sigprop's extension) or
        the paper's T → ∞ theory (``False``).
    record : per-layer fields to keep (``None`` or ``()`` keeps only final values and condensation counts,
        which is what diagrams need).
    progress : optional ``progress(layer, depth)`` called after every block (long propagations show it).
    """
    if not isinstance(spec, Spec):
        raise ValueError(f"spec must be a sigprop.Spec; got {type(spec).__name__}")
    record = tuple(record or ())
    bad = [r for r in record if r not in FIELDS]
    if bad:
        raise ValueError(f"record must be a subset of {FIELDS}; got {bad}")
    shape = spec.shape
    L = spec.depth
    if spec.causal:
        from sigprop.theory import finite

        with finite.one_blas_thread():  # many small products: one BLAS thread is several times faster
            return _propagate_positions(spec, finite_T, record, progress)
    q = np.broadcast_to(np.asarray(spec.q0, dtype=float), shape).copy()
    p = q * np.broadcast_to(np.asarray(spec.rho0, dtype=float), shape)
    arrays = _arrays(record, L, shape)
    if "rho" in arrays:
        arrays["rho"][0] = p / q
    if "q" in arrays:
        arrays["q"][0] = q
    if "log_q" in arrays:
        arrays["log_q"][0] = np.log(q)
    pre = spec.norm == "pre"
    log_scale: Any = np.zeros(shape) if pre else 0.0
    scale: Any = 1.0
    cond_track = _Condensation(shape)
    want_entropy = "entropy" in arrays
    for layer in range(1, L + 1):
        out = blocks.block(q, p, spec, finite_T=finite_T, scale=scale, want_entropy=want_entropy)
        q, p = out.q, out.p  # post-LN: q is a 0-d 1.0; arrays broadcast to the grid on their own
        if pre:
            big = q > 1e64
            if np.any(big):  # renormalise the stored pre-LN stream; its true size is q·e^{log_scale}
                q, p = np.broadcast_to(q, shape), np.broadcast_to(p, shape)
                log_scale = log_scale + np.where(big, np.log(np.where(big, q, 1.0)), 0.0)
                p = np.where(big, p / np.where(big, q, 1.0), p)
                q = np.where(big, 1.0, q)
                with np.errstate(over="ignore"):
                    scale = np.exp(log_scale)  # inf only where branch outputs are negligible anyway
        if progress is not None:
            progress(layer, L)
        cond_track.add(layer, out.attn.condensed)
        if arrays:
            _record(arrays, layer, shape, _ratio(p, q), np.log(q) + log_scale, out.attn)
    q, p = np.broadcast_to(q, shape), np.broadcast_to(p, shape)
    if not (np.all(np.isfinite(q)) and np.all(np.isfinite(p))):  # pragma: no cover - guarded above
        raise FloatingPointError("the propagated state became non-finite")
    prop = Propagation(spec=spec, finite_T=finite_T, **arrays)
    prop.rho_final = np.asarray(_ratio(p, q))
    prop.log_q_final = np.broadcast_to(np.log(q) + log_scale, shape).copy()
    prop.n_condensed = cond_track.n
    prop.first_condensed = cond_track.first
    if "rho" in arrays:
        prop.rho_last = arrays["rho"]
        qrec = arrays["q"] if "q" in arrays else None
        if qrec is not None:
            prop.q_pos = qrec[..., None]
            prop.positions = np.array([(spec.seq_len + 1) / 2.0])
    return prop


def _arrays(record: tuple[str, ...], L: int, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    for name in record:
        dtype = bool if name == "condensed" else float
        arrays[name] = np.full((L + 1, *shape), False if dtype is bool else np.nan, dtype=dtype)
    return arrays


def _record(arrays: dict[str, np.ndarray], layer: int, shape, rho, lq, attn) -> None:
    with np.errstate(over="ignore"):
        vals = {
            "rho": rho,
            "q": np.exp(lq),
            "log_q": lq,
            "y2": attn.y2,
            "entropy": attn.entropy,
            "beta_c": attn.beta_c,
            "condensed": attn.condensed,
        }
    for name, arr in arrays.items():
        arr[layer] = np.broadcast_to(vals[name], shape)


#: grid points per chunk of a causal propagation: its per-pair arrays then stay cache-sized (a loop over
#: chunks of a vectorised grid, several times faster than one pass over a 200×200 grid). At 1024 a K × K
#: float array (K = 22) is 4 MB and the allocator reuses its memory; at 2048 the temporaries were mapped
#: afresh (0.6–1.2 s of system time per 200×200, 12-layer diagram, against < 0.15 s)
CHUNK = 1024
#: threads over the chunks of a causal grid (each runs single-threaded BLAS); 1 = one after the other
THREADS = max(1, min(4, os.cpu_count() or 1))


#: size of the block :func:`_keep_freed_heap` allocates and frees once (just under glibc's 32 MiB cap;
#: 0 turns the lift off, as ``benchmarks/bench_heap.py`` does for its side-by-side runs)
HEAP_LIFT = 31 << 20
_heap_lifted = False


def _keep_freed_heap() -> None:
    """Once per process, allocate and free one :data:`HEAP_LIFT`-byte block.

    glibc's malloc serves a block above its mmap threshold (128 KiB at start) by ``mmap``; freeing such a
    block raises the threshold to its size and the heap's trim threshold to twice that (mallopt(3),
    "dynamic mmap threshold"). A causal propagation makes the same few 1–3 MB pair temporaries in every
    block; with the threshold lifted only to their own size, the freed heap above 2× that is returned to
    the kernel after a block and faults in again in the next (1.2 of 5.3 CPU-seconds of a single-threaded
    200×200, 12-layer causal diagram). After this call up to 62 MiB of freed heap stays mapped. Elsewhere
    (other allocators) it is a harmless allocation.
    """
    global _heap_lifted
    if not _heap_lifted:
        np.empty(HEAP_LIFT, dtype=np.uint8)
        _heap_lifted = True


def _propagate_positions(spec: Spec, finite_T: bool, record: tuple[str, ...],
                         progress: Callable[[int, int], None] | None) -> Propagation:
    """:func:`propagate` of a causal stack, the grid split in chunks of :data:`CHUNK` points."""
    _keep_freed_heap()
    shape = spec.shape
    G = math.prod(shape)
    if G <= CHUNK:
        return _propagate_chunk(spec, finite_T, record, progress)
    flat = {f.name: np.broadcast_to(v, shape).ravel() for f in dataclasses.fields(spec)
            if isinstance(v := getattr(spec, f.name), np.ndarray)}
    starts = list(range(0, G, CHUNK))
    L = spec.depth
    lock = threading.Lock()
    done = [0]

    def step(ell, _L):  # layers done over all chunks, reported as a monotone layer count
        assert progress is not None
        with lock:
            done[0] += 1
            progress(max(1, done[0] // len(starts)), L)

    def run(a: int) -> Propagation:
        return _propagate_chunk(spec.replace(**{k: v[a:a + CHUNK] for k, v in flat.items()}), finite_T, record,
                                None if progress is None else step)

    workers = min(THREADS, len(starts))
    if workers > 1:  # numpy and BLAS release the GIL: chunks run side by side on the cores
        with ThreadPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(run, starts))
    else:
        parts = [run(a) for a in starts]
    first = parts[0]
    out = Propagation(spec=spec, finite_T=finite_T)
    for name in (*FIELDS, "rho_last", "q_pos"):
        if getattr(first, name) is not None:
            arr = np.concatenate([getattr(pt, name) for pt in parts], axis=1)
            setattr(out, name, arr.reshape(L + 1, *shape, *arr.shape[2:]))
    for name in ("rho_final", "log_q_final", "n_condensed", "first_condensed"):
        setattr(out, name, np.concatenate([np.ravel(getattr(pt, name)) for pt in parts]).reshape(shape))
    out.positions = first.positions
    return out


def _propagate_chunk(spec: Spec, finite_T: bool, record: tuple[str, ...],
                     progress: Callable[[int, int], None] | None) -> Propagation:
    """:func:`propagate` of a causal stack with the state resolved per position bin (docs/theory.md §7)."""
    shape = spec.shape
    L = spec.depth
    geo = rows.geometry(spec.seq_len, True, spec.window)
    K = geo.size
    q0 = np.broadcast_to(np.asarray(spec.q0, dtype=float), shape)
    q, p = blocks.spread(q0, q0 * np.asarray(spec.rho0, dtype=float), geo)
    arrays = _arrays(record, L, shape)
    keep = "rho" in arrays
    rho_last = np.full((L + 1, *shape), np.nan) if keep else None
    q_pos = np.full((L + 1, *shape, K), np.nan) if keep else None

    def state(q, p, log_scale):
        qm, pm = blocks.all_tokens(q, p, geo)
        return _ratio(pm, qm), np.log(qm) + log_scale

    pre = spec.norm == "pre"
    log_scale: Any = np.zeros(shape) if pre else 0.0
    scale: Any = 1.0
    cond_track = _Condensation(shape)
    want_entropy = "entropy" in arrays

    def put(layer, q, p, log_scale, attn=None):
        rho, lq = state(q, p, log_scale)
        if attn is None:
            for name, v in (("rho", rho), ("q", np.exp(lq)), ("log_q", lq)):
                if name in arrays:
                    arrays[name][0] = v
        else:
            _record(arrays, layer, shape, rho, lq, attn)
        if keep:
            ql, pl = blocks.all_tokens(q, p, geo, last=True)
            rho_last[layer] = np.broadcast_to(_ratio(pl, ql), shape)
            with np.errstate(over="ignore"):
                q_pos[layer] = np.broadcast_to(np.asarray(q) * np.exp(_expand(log_scale)), (*shape, K))

    put(0, q, p, log_scale)
    for layer in range(1, L + 1):
        out = blocks.block_positions(q, p, spec, geo, finite_T=finite_T, scale=scale, want_entropy=want_entropy)
        q, p = out.q, out.p
        if pre:
            qm = np.broadcast_to(blocks.all_tokens(q, p, geo)[0], shape)
            big = qm > 1e64
            if np.any(big):  # renormalise every position of the stored stream by its mean q̄
                f = np.where(big, qm, 1.0)
                log_scale = log_scale + np.log(f)
                q, p = q / f[..., None], p / f[..., None, None]
                with np.errstate(over="ignore"):
                    scale = np.exp(log_scale)
        if progress is not None:
            progress(layer, L)
        cond_track.add(layer, out.attn.condensed)
        if arrays:
            put(layer, q, p, log_scale, out.attn)
    rho_f, lq_f = state(q, p, log_scale)
    prop = Propagation(spec=spec, finite_T=finite_T, **arrays)
    prop.rho_final = np.asarray(np.broadcast_to(rho_f, shape))
    prop.log_q_final = np.broadcast_to(lq_f, shape).copy()
    if not np.all(np.isfinite(prop.log_q_final)):  # pragma: no cover - guarded above
        raise FloatingPointError("the propagated state became non-finite")
    prop.n_condensed = cond_track.n
    prop.first_condensed = cond_track.first
    prop.rho_last, prop.q_pos, prop.positions = rho_last, q_pos, (geo.positions.copy() if keep else None)
    return prop


def _expand(x):
    return np.asarray(x)[..., None] if np.ndim(x) else x


class _Condensation:
    """Counts the condensed layers (β > β_c) per grid point and keeps whether block 1 is condensed."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.n = np.zeros(shape, dtype=np.int64)
        self.first = np.zeros(shape, dtype=bool)

    def add(self, layer: int, cond: np.ndarray) -> None:
        self.n += cond
        if layer == 1:
            self.first = np.broadcast_to(cond, self.n.shape).copy()


def _ratio(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """ρ = p/q via :func:`sigprop.theory.blocks.cosine` (0/0 reads as 1)."""
    return blocks.cosine(p, q)


def single_layer_cosine(beta, rho, seq_len=None, *, finite_T: bool = True) -> np.ndarray:
    """ρ' after one bare softmax-attention layer on unit-norm tokens (Result 1, docs/theory.md §3.1).

    T = ∞: ``ρ' = ρ / (ρ + (1 − ρ) Y²)``. Finite T: ``(ρ + (1 − ρ) O) / (ρ + (1 − ρ) Y²)``.
    """
    rho = rem.check_rho(rho)
    beta = rem.check_nonneg("beta", beta)
    out = blocks.attention(1.0, rho, beta, seq_len, finite_T=finite_T and seq_len is not None)
    return _ratio(out.p, out.q)
