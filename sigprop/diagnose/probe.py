"""The empirical check of a diagnosis: build the model from its config per seed (or take the given module),
probe it on random inputs with :func:`sigprop.measure.measure`, and average per layer over seeds.

Per layer: ``rho`` (p̄/q̄ of the Gram matrix, the theory's all-token ρ), ``cosine`` (mean pairwise
cosine), ``q``, ``attn_entropy_norm``, and ``logit_var``: the within-row variance of the attention logits
(read from ``ln A``, which differs from the logits by a row constant), with ``logit_var_ratio`` = measured /
predicted β² ln T (1 − c̄ ρ̄_keys) on the normalised attention input (c̄ from
:func:`sigprop.theory.rope.cbar`, 1 without RoPE; ρ̄_keys from :func:`key_overlap`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["key_overlap", "logit_variance", "measure_rows", "model_bytes"]

KEYS = ("rho", "cosine", "q", "attn_entropy_norm", "logit_var")


def logit_variance(A: Any, causal: bool) -> float:
    """Mean over rows (≥ 2 visible keys), heads and batch of the unbiased within-row variance of ln A."""
    import torch

    A = A.detach().double()
    T = A.shape[-1]
    vis = A > 0
    if causal:
        vis = vis & torch.ones(T, T, dtype=torch.bool, device=A.device).tril()
    logs = torch.where(vis, torch.log(A.clamp_min(1e-300)), torch.zeros_like(A))
    n = vis.sum(-1).double()
    mean = logs.sum(-1) / n.clamp_min(1)
    var = (torch.where(vis, (logs - mean[..., None]) ** 2, torch.zeros_like(A))).sum(-1) / (n - 1).clamp_min(1)
    ok = n >= 2
    return float(var[ok].mean()) if ok.any() else math.nan


def model_bytes(config: Any) -> int:
    """fp32 bytes of a model's parameters, counted on the ``meta`` device (nothing allocated)."""
    import torch

    from sigprop.diagnose import archs

    arch = archs.arch_for(getattr(config, "model_type", None))
    with torch.device("meta"):
        model = archs.builder(arch)(config)
    return 4 * sum(p.numel() for p in model.parameters())


def _inputs(config: Any, model: Any, seq_len: int, batch: int, seed: int, device: str) -> dict[str, Any]:
    import torch

    g = torch.Generator().manual_seed(10_007 * seed + 1)
    if getattr(config, "model_type", None) == "vit":
        c, s = config.num_channels, config.image_size
        return {"pixel_values": torch.randn(batch, c, s, s, generator=g).to(device)}
    vocab = int(getattr(config, "vocab_size", 0) or 0)
    if vocab < 2:
        raise ValueError("cannot probe a model without a vocabulary (give a config with vocab_size)")
    pad = getattr(config, "pad_token_id", None)
    ids = torch.randint(0, vocab - (1 if isinstance(pad, int) and 0 <= pad < vocab else 0), (batch, seq_len), generator=g)
    if isinstance(pad, int) and 0 <= pad < vocab:
        ids = ids + (ids >= pad).long()  # never the padding token (its embedding row is zero)
    return {"input_ids": ids.to(device)}


def key_overlap(X: Any, causal: bool, centre: bool) -> float:
    """Row average of the mean cosine ρ̄_t over distinct pairs of the keys row t sees (all T, or s ≤ t),
    of the normalised attention inputs ``X`` ``(B, T, d)`` (centred first for LayerNorm): the within-row
    logit variance of row t is β² ln T (1 − ρ̄_t) in expectation over W_Q, W_K."""
    import torch

    X = X.detach().double()
    if centre:
        X = X - X.mean(-1, keepdim=True)
    X = X / X.norm(dim=-1, keepdim=True).clamp_min(1e-300)
    C = X @ X.transpose(-1, -2)  # (B, T, T) cosines
    T = C.shape[-1]
    if not causal:
        off = (C.sum((-1, -2)) - T) / (T * (T - 1))
        return float(off.mean())
    # S(t) = Σ_{s,s' ≤ t} C = S(t−1) + 2 Σ_{s ≤ t} C[t, s] − C[t, t]
    tri = torch.ones(T, T, dtype=C.dtype, device=C.device).tril()
    S = 2 * (C * tri[None]).sum(-1).cumsum(-1) - torch.diagonal(C, dim1=-2, dim2=-1).cumsum(-1)
    n = torch.arange(1, T + 1, dtype=C.dtype, device=C.device)
    rho_t = (S[:, 1:] - n[1:]) / (n[1:] * (n[1:] - 1))
    return float(rho_t.mean())


def _one(model: Any, config: Any, seq_len: int, batch: int, seed: int, device: str, cbar: float,
         beta2lnT: float, centre: bool = True) -> list[dict[str, float]]:
    from sigprop.measure import measure

    m = measure(model, output_hidden_states=True, stable_rank=False, **_inputs(config, model, seq_len, batch, seed, device))
    causal = bool(m.meta["causal"])
    atts = list(getattr(m.output, "attentions", None) or [])
    hidden = list(getattr(m.output, "hidden_states", None) or [])
    rows = []
    for ell, r in enumerate(m.layers):
        row = {"layer": ell, "rho": r["rho_gram"], "cosine": r["cosine"], "q": r["q"],
               "attn_entropy_norm": r["attn_entropy_norm"] if ell else math.nan, "logit_var": math.nan}
        if ell and ell - 1 < len(atts) and atts[ell - 1] is not None:
            row["logit_var"] = logit_variance(atts[ell - 1], causal)
        rows.append(row)
    for ell in range(1, len(rows)):
        rho_in = key_overlap(hidden[ell - 1], causal, centre) if ell - 1 < len(hidden) else rows[ell - 1]["cosine"]
        rows[ell]["logit_var_pred"] = beta2lnT * (1.0 - cbar * rho_in)
    return rows


def _average(runs: list[list[dict[str, float]]]) -> list[dict[str, Any]]:
    out = []
    for ell in range(len(runs[0])):
        row: dict[str, Any] = {"layer": ell}
        for k in (*KEYS, "logit_var_pred"):
            vals = np.array([r[ell].get(k, math.nan) for r in runs], dtype=float)
            good = vals[np.isfinite(vals)]
            row[k] = float(good.mean()) if good.size else None
            if k in ("rho", "attn_entropy_norm") and good.size > 1:
                row[k + "_std"] = float(good.std(ddof=1))
        if row.get("logit_var") is not None and row.get("logit_var_pred"):
            row["logit_var_ratio"] = row["logit_var"] / row["logit_var_pred"]
        if ell == 0:
            row["attn_entropy_norm"] = None
        out.append(row)
    return out


def measure_rows(diag: Any, *, seeds: int, batch: int = 2, device: str = "cpu", stream: bool | None = None,
                 transform: Callable[[Any], None] | None = None, spec: Any = None) -> list[dict[str, Any]]:
    """Measured per-layer rows of ``diag``'s model over ``seeds`` (see module docstring).

    ``transform(model)`` is applied to every built model before probing (a fix); ``spec`` (default the
    diagnosis' spec) gives β and the RoPE c̄ for the predicted logit variance.
    """
    import torch

    from sigprop.diagnose import archs

    spec = spec if spec is not None else diag.spec
    from sigprop.diagnose.resolve import full_config

    tgt = diag.target
    config = tgt.config = full_config(tgt.config)  # a theory-only diagnosis may hold a light view
    T = spec.seq_len
    eff = diag.effective
    cbar = 1.0
    if spec.rope_fraction:
        from sigprop.theory import rope

        cbar = rope.cbar(spec.rope_fraction, spec.rope_theta, eff.head_dim, T, causal=spec.causal, window=spec.window)
    beta2lnT = float(spec.beta) ** 2 * math.log(T)
    if tgt.model is None:
        big = model_bytes(config) > STREAM_BYTES_LIMIT()
        if stream or (stream is None and big):
            if transform is not None:
                raise ValueError("a fix is applied to built models; this config is too large to build (use a smaller --set)")
            return _streamed(config, T, seeds, batch, device)
        build = archs.builder(archs.arch_for(getattr(config, "model_type", None)))
    runs = []
    for s in range(seeds):
        if tgt.model is None:
            torch.manual_seed(s)
            model = build(config).eval().to(device)
        else:
            # a given model is probed as it is; a fix is applied to a copy (never twice to the same weights)
            model = (copy.deepcopy(tgt.model) if transform is not None else tgt.model).eval().to(device)
        if transform is not None:
            transform(model)
        runs.append(_one(model, config if config is not None else getattr(model, "config", None), T, batch, s, device,
                         cbar, beta2lnT, spec.norm_type == "layernorm"))
        if tgt.model is None:
            del model
    return _average(runs)


def STREAM_BYTES_LIMIT() -> int:  # noqa: N802 - read at call time so tests can lower it
    from sigprop.diagnose import core

    return core.STREAM_BYTES


def _streamed(config: Any, T: int, seeds: int, batch: int, device: str) -> list[dict[str, Any]]:
    from sigprop.diagnose.stream import stream_measure

    res = stream_measure(config, seq_len=T, seeds=seeds, batch=batch, device=device)
    rows = []
    for i, ell in enumerate(res["layer"]):
        rows.append({"layer": int(ell), "rho": res["rho_gram"][i], "cosine": res["cosine"][i], "q": res["q"][i],
                     "attn_entropy_norm": res["attn_entropy_norm"][i] if ell else None, "logit_var": None})
    rows[0]["stream"] = {k: v for k, v in res.get("meta", {}).items() if isinstance(v, (int, float, str, bool))}
    return rows
