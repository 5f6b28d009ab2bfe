"""Measured gradient norms of the torch twin at initialisation, against Result 2 (:mod:`sigprop.theory.gradients`).

Two protocols, both on :class:`sigprop.nn.TransformerStack` models built from a :class:`sigprop.Spec`:

* ``mode="random"`` — the first block's attention module alone, fed Gaussian tokens
  ``x_t = sqrt(q)(sqrt(ρ) u + sqrt(1 − ρ) z_t)``; a random upstream gradient ``δ`` with **unit-norm rows**
  (``Σ_t |δ_t|² = T``) is back-propagated through the attention output. This is exactly the setting of
  the theory (uncorrelated δ independent of the weights).
* ``mode="mlm"`` — a masked-LM-like loss on the whole stack (``depth`` blocks): random token ids, 15% of
  positions replaced by a mask id, token + position embeddings (std 0.01 / 0.05 as in the authors'
  gradient notebook) → embedding LN → blocks → a random linear readout to the vocabulary (fixed entry
  std 0.02, like a BERT head, so the per-token gradient² grows ∝ d) → cross-entropy averaged over the
  masked positions. No corpus is needed. For each layer ℓ the upstream gradient at the attention output
  and the attention input are *measured* (hooks), and the prediction is Result 2 **conditional on** the
  measured ``Σ_t |δ_t|²`` and input overlaps ``(q, p)`` of that layer (the theory does not predict δ
  through depth).

Every record is a flat dict (tidy data): ``mode, layer, beta, seq_len, width, heads, seed, grad_wq2,
grad_wk2, grad_wv2, delta2, q_in, p_in, predicted_finite, predicted_asymptotic, predicted_finite_width,
predicted_wv`` (squared Frobenius norms; predictions from the finite-T d → ∞ law, the T = ∞ law, the
finite-T law with the rank-d Gram correction, and the W_V law).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from sigprop.spec import Spec
from sigprop.theory import gradients as theory

if TYPE_CHECKING:
    from torch import nn

    from sigprop.nn.modules import Block, TransformerStack

MODES = ("random", "mlm")

__all__ = ["MODES", "fig3c_scaled", "measure_random", "measure_mlm", "sweep", "summarise", "predictions"]


def fig3c_scaled(value: Any, seq_len: int, width: int) -> Any:
    """Fig 3c's scaling of a squared W_Q-gradient norm (or its standard error): ``value · T d⁻² (ln T)^{-1/2}``
    (arXiv 2505.24333 §3; :func:`sigprop.theory.gradients.scaled_wq_grad` applies it to the prediction)."""
    return value * seq_len / (width**2 * math.sqrt(math.log(seq_len)))


def _torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("gradient measurements need the torch extra: pip install 'sigprop[torch]'") from exc
    return torch


def predictions(beta: float, seq_len: int, width: int, *, q: float, p: float, sigma_v2: float,
                delta2: float) -> dict[str, float]:
    """Result-2 predictions for one layer given its input overlaps (q, p) and upstream ``Σ|δ_t|²``."""
    q = max(float(q), 1e-12)
    rho = min(max(float(p) / q, 0.0), 1.0)
    kw: dict[str, Any] = dict(seq_len=seq_len, width=width, q=q, sigma_v2=sigma_v2, delta2=delta2)
    return {
        "predicted_finite": float(theory.wq_grad_norm2(beta, rho, finite_T=True, **kw)),
        "predicted_asymptotic": float(theory.wq_grad_norm2(beta, rho, finite_T=False, **kw)),
        "predicted_finite_width": float(theory.wq_grad_norm2(beta, rho, finite_T=True, finite_width=True, **kw)),
        "predicted_wv": float(theory.wv_grad_norm2(beta, rho, seq_len=seq_len, width=width, q=q, delta2=delta2)),
    }


def _spec(beta, seq_len, width, heads, depth, sigma_v2, rho, q, base: Spec | None) -> Spec:
    base = base if base is not None else Spec()
    return base.replace(beta=float(beta), seq_len=int(seq_len), width=int(width), heads=int(heads),
                        depth=int(depth), sigma_v2=float(sigma_v2), rho0=float(rho), q0=float(q))


def _weight_grad2(layer: nn.Linear) -> float:
    """``|∂L/∂W|_F²`` of a linear layer after a backward (in float64)."""
    grad = layer.weight.grad
    assert grad is not None, "the backward pass did not reach this weight"
    return float(grad.double().pow(2).sum())


def _blocks(model: TransformerStack) -> list[Block]:
    """The blocks of a :class:`sigprop.nn.TransformerStack` (its ModuleList holds only Blocks)."""
    return cast("list[Block]", list(model.blocks))


def _overlaps(x) -> tuple[float, float]:
    """Mean ``q = |x_t|²/d`` and mean off-diagonal ``p = x_t·x_s/d`` of one sequence ``(T, d)``."""
    T, d = x.shape
    q = float((x * x).sum() / (T * d))
    s = x.sum(0)
    p = float(((s * s).sum() - (x * x).sum()) / (T * (T - 1) * d))
    return q, p


def measure_random(beta: float, seq_len: int, width: int, seed: int, *, rho: float = 0.0, q: float = 1.0,
                   heads: int = 1, sigma_v2: float = 1.0, spec: Spec | None = None) -> dict[str, Any]:
    """One model, one batch: gradient norms of the first attention layer under a random unit-row δ."""
    torch = _torch()
    from sigprop.nn import TransformerStack

    sp = _spec(beta, seq_len, width, heads, 1, sigma_v2, rho, q, spec)
    model = TransformerStack(sp, seed=int(seed))
    attn = _blocks(model)[0].attn
    g = torch.Generator().manual_seed(10_007 * int(seed) + 17)
    T, d = int(seq_len), int(width)
    u = torch.randn(1, d, generator=g, dtype=torch.float64)
    z = torch.randn(T, d, generator=g, dtype=torch.float64)
    x = (math.sqrt(q) * (math.sqrt(rho) * u + math.sqrt(1.0 - rho) * z)).float()
    delta = torch.randn(T, d, generator=g, dtype=torch.float64)
    delta = (delta / delta.norm(dim=1, keepdim=True)).float()
    y = attn(x[None])
    y.backward(delta[None])
    rec = {
        "mode": "random", "layer": 1, "beta": float(beta), "seq_len": T, "width": d, "heads": int(heads),
        "seed": int(seed), "grad_wq2": _weight_grad2(attn.q), "grad_wk2": _weight_grad2(attn.k),
        "grad_wv2": _weight_grad2(attn.v), "delta2": float(T), "q_in": float(q),
        "p_in": float(q * rho),
    }
    rec.update(predictions(beta, T, d, q=q, p=q * rho, sigma_v2=float(sp.sigma_v2), delta2=float(T)))
    return rec


def measure_mlm(beta: float, seq_len: int, width: int, seed: int, *, depth: int = 1, heads: int = 1,
                sigma_v2: float = 0.2, vocab_size: int = 2000, mask_prob: float = 0.15,
                readout_std: float = 0.02, emb_std: float = 0.01, pos_std: float = 0.05,
                spec: Spec | None = None) -> list[dict[str, Any]]:
    """One model, one random sequence, masked-LM-like loss; one record per layer (see module docstring)."""
    torch = _torch()
    from sigprop.nn import TransformerStack

    if not 0.0 < mask_prob <= 1.0:
        raise ValueError(f"mask_prob must be in (0, 1]; got {mask_prob}")
    if vocab_size < 3:
        raise ValueError(f"vocab_size must be ≥ 3; got {vocab_size}")
    sp = _spec(beta, seq_len, width, heads, depth, sigma_v2, 0.0, 1.0, spec)
    model = TransformerStack(sp, vocab_size=vocab_size, emb_std=emb_std, pos_std=pos_std, seed=int(seed))
    T, d = int(seq_len), int(width)
    g = torch.Generator().manual_seed(10_007 * int(seed) + 29)
    ids = torch.randint(1, vocab_size, (1, T), generator=g)
    masked = torch.rand(1, T, generator=g) < mask_prob
    if not bool(masked.any()):
        masked[0, int(torch.randint(0, T, (1,), generator=g))] = True
    inputs = ids.masked_fill(masked, 0)  # id 0 plays [MASK]
    readout = torch.randn(vocab_size, d, generator=g, dtype=torch.float64).mul_(readout_std).float()

    seen: dict[int, dict[str, Any]] = {}
    handles = []
    blocks = _blocks(model)
    for i, block in enumerate(blocks):
        def hook(mod, args, out, i=i):
            out.retain_grad()
            seen[i] = {"x": args[0].detach()[0], "y": out}
        handles.append(block.attn.register_forward_hook(hook))
    try:
        hidden = model(input_ids=inputs)
        logits = hidden[masked] @ readout.T
        loss = torch.nn.functional.cross_entropy(logits, ids[masked])
        loss.backward()
    finally:
        for h in handles:
            h.remove()
    out = []
    for i, block in enumerate(blocks):
        attn = block.attn
        qin, pin = _overlaps(seen[i]["x"].double())
        delta2 = float(seen[i]["y"].grad.double().pow(2).sum())
        rec = {
            "mode": "mlm", "layer": i + 1, "beta": float(beta), "seq_len": T, "width": d, "heads": int(heads),
            "seed": int(seed), "grad_wq2": _weight_grad2(attn.q), "grad_wk2": _weight_grad2(attn.k),
            "grad_wv2": _weight_grad2(attn.v), "delta2": delta2, "q_in": qin,
            "p_in": pin, "loss": float(loss.detach()),
        }
        rec.update(predictions(beta, T, d, q=qin, p=pin, sigma_v2=float(sp.sigma_v2), delta2=delta2))
        out.append(rec)
    return out


def sweep(betas: Iterable[float], seq_lens: Iterable[int], widths: Iterable[int], seeds: int = 3, *,
          mode: str = "random", depth: int = 1, heads: int = 1, sigma_v2: float | None = None,
          seed0: int = 0, progress: Callable[[int, int], None] | None = None, **kw: Any) -> list[dict[str, Any]]:
    """Measure every (β, T, d, seed) combination; returns tidy records (one per layer and model).

    ``progress(done, total)`` is called after each model. ``sigma_v2`` defaults to 1 (random) / 0.2 (mlm).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}; got {mode!r}")
    betas = [float(b) for b in betas]
    seq_lens = [int(t) for t in seq_lens]
    widths = [int(w) for w in widths]
    if not betas or not seq_lens or not widths:
        raise ValueError("sweep needs at least one beta, seq_len and width")
    if any(b < 0 or not math.isfinite(b) for b in betas):
        raise ValueError("betas must be finite and ≥ 0")
    if any(t < 2 for t in seq_lens) or any(w < 1 for w in widths):
        raise ValueError("seq_len must be ≥ 2 and width ≥ 1")
    if int(seeds) < 1:
        raise ValueError(f"seeds must be ≥ 1; got {seeds}")
    if mode == "random" and depth != 1:
        raise ValueError("mode='random' measures one attention layer; use mode='mlm' for depth > 1")
    sv2 = (1.0 if mode == "random" else 0.2) if sigma_v2 is None else float(sigma_v2)
    total = len(betas) * len(seq_lens) * len(widths) * int(seeds)
    done = 0
    records: list[dict[str, Any]] = []
    for T in seq_lens:
        for d in widths:
            for b in betas:
                for s in range(seed0, seed0 + int(seeds)):
                    if mode == "random":
                        records.append(measure_random(b, T, d, s, heads=heads, sigma_v2=sv2, **kw))
                    else:
                        records.extend(measure_mlm(b, T, d, s, depth=depth, heads=heads, sigma_v2=sv2, **kw))
                    done += 1
                    if progress is not None:
                        progress(done, total)
    return records


_NUM = ("grad_wq2", "grad_wk2", "grad_wv2", "delta2", "q_in", "p_in", "predicted_finite",
        "predicted_asymptotic", "predicted_finite_width", "predicted_wv")


def summarise(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Seed averages per (mode, layer, β, T, d, heads): means, standard errors and measured/predicted ratios.

    Ratios are ratios of means (``mean grad / mean prediction``), with the standard error of the numerator
    propagated; ``scaled_wq`` is the Fig 3c scaling ``mean ‖∂W_Q‖² · T d⁻² (ln T)^{-1/2}``.
    """
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        key = (r["mode"], r["layer"], r["beta"], r["seq_len"], r["width"], r.get("heads", 1))
        groups.setdefault(key, []).append(r)
    out = []
    for (mode, layer, beta, T, d, heads), rs in sorted(groups.items()):
        row: dict[str, Any] = {"mode": mode, "layer": layer, "beta": beta, "seq_len": T, "width": d,
                               "heads": heads, "n": len(rs)}
        for k in _NUM:
            v = np.array([r[k] for r in rs], dtype=float)
            row[k] = float(v.mean())
            if k.startswith("grad"):
                row[k + "_sem"] = float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else float("nan")
        for pk in ("predicted_finite", "predicted_asymptotic", "predicted_finite_width"):
            den = row[pk]
            name = "ratio_" + pk.removeprefix("predicted_")
            row[name] = row["grad_wq2"] / den if den > 0 else float("inf") if row["grad_wq2"] > 0 else float("nan")
        row["ratio_wk_finite"] = row["grad_wk2"] / row["predicted_finite"] if row["predicted_finite"] > 0 else float("nan")
        row["ratio_wv"] = row["grad_wv2"] / row["predicted_wv"] if row["predicted_wv"] > 0 else float("nan")
        row["ratio_sem"] = row["grad_wq2_sem"] / row["predicted_finite"] if row["predicted_finite"] > 0 else float("nan")
        row["scaled_wq"] = fig3c_scaled(row["grad_wq2"], T, d)
        out.append(row)
    return out
