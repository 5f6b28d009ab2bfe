"""The fix: what to change in a model's initialisation, and doing it in place without touching its code.

:func:`recommend` takes the largest-margin trainable point (β, α_SA) of the diagnosis' β × α_SA diagram
(:func:`sigprop.recommend_from`) — or centred attention when no softmax point is trainable — and states it
in the model's own terms: the std of W_Q and W_K that gives β (σ_Q = σ_K = √(β √ln T / (d s √d_h))).

:func:`apply` realises it on a built model:

* **β**: W_Q and W_K (or their slices of a fused projection) are redrawn from N(0, σ²);
* **α** (the skip strength; the model's skip is always 1): post-LN — ``LN(x + F(x)/α) = LN(α x + F(x))``
  by LayerNorm's scale invariance, so the branch's output projection (weight and bias) is divided by α;
  pre-LN — ``x_k = α x_{k−1} + F_k(LN x_{k−1})`` equals ``c_k z_k`` with ``z_k = z_{k−1} + F_k(LN z_{k−1}) / c_k``
  and ``c_k = α_1 ⋯ α_k`` (the norm ignores the scale of its input), so sublayer k's output projection is
  divided by the running product c_k (a parallel block's two branches share theirs);
* **centred attention** (``Σ_s (A_ts − 1/n_t) v_s``, docs/theory.md §6): a forward pre-hook on the
  output projection subtracts from each row the mean of the values it may see (all keys, or s ≤ t when
  causal), captured by a forward hook on the value projection.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from sigprop.diagnose.extract import fused_index, get_path, layers_of, role_weight

__all__ = ["apply", "fixed_block", "qk_std_for", "recommend"]


def qk_std_for(diag: Any, beta: float) -> float:
    """Std of W_Q, W_K entries giving β in this model (its width, head size and logit scale)."""
    eff, T = diag.effective, diag.spec.seq_len
    return math.sqrt(beta * math.sqrt(math.log(T)) / (eff.width * eff.logit_scale * math.sqrt(eff.head_dim)))


def recommend(diag: Any, *, beta: float | None = None, alpha_sa: float | None = None) -> dict[str, Any]:
    """``{"beta", "qk_std", "alpha_sa", "alpha_mlp", "attention", "spec", "from_diagram"}``.

    Default: the largest-margin trainable point of the diagnosis' diagram; ``beta``/``alpha_sa`` pin
    either coordinate instead. If no softmax point is trainable, centred attention at the model's β and
    α_SA (its rank-collapse-free variant, docs/theory.md §6).
    """
    if diag.spec is None or diag.report is None:
        raise ValueError(f"{diag.name}: no recommendation for an unsupported model ({'; '.join(diag.reasons)})")
    spec = diag.spec
    rec = diag.report.recommended
    attention = "softmax"
    if rec is None and beta is None and alpha_sa is None:
        attention = "centred"
        b, a = float(spec.beta), float(spec.alpha_sa)
    else:
        b = float(beta if beta is not None else rec.x if rec is not None else spec.beta)
        a = float(alpha_sa if alpha_sa is not None else rec.y if rec is not None else spec.alpha_sa)
    if not (b > 0 and math.isfinite(b)) or not (a >= 0 and math.isfinite(a)):
        raise ValueError(f"recommended β and α_SA must be finite with β > 0, α_SA ≥ 0; got β={b}, α_SA={a}")
    new = spec.replace(beta=b, alpha_sa=a, attention=attention)
    return {"beta": b, "qk_std": qk_std_for(diag, b), "alpha_sa": a, "alpha_mlp": float(spec.alpha_mlp),
            "attention": attention, "spec": new, "from_diagram": rec is not None}


def _scale_module(mod: Any, factor: float) -> None:
    import torch

    with torch.no_grad():
        mod.weight.mul_(factor)
        if getattr(mod, "bias", None) is not None:
            mod.bias.mul_(factor)


def _reinit_qk(block: Any, arch: Any, heads: int, std: float) -> None:
    import torch

    with torch.no_grad():
        if arch.qkv:
            mod = get_path(block, arch.qkv)
            w, tr = role_weight(mod)
            view = w.T if tr else w
            for part in (0, 1):
                idx = fused_index(arch.qkv_layout, part, 3, view.shape[0], heads)
                view[idx] = torch.randn(len(idx), view.shape[1], dtype=w.dtype, device=w.device) * std
        else:
            for role in (arch.q, arch.k):
                mod = get_path(block, role)
                mod.weight.normal_(0.0, std)


def _alpha_factors(spec: Any, new: Any, depth: int) -> list[tuple[float, float]]:
    """Per block, the factors (attention branch, MLP branch) by which output projections are multiplied."""
    ra = float(new.alpha_sa) / float(spec.alpha_sa) if float(spec.alpha_sa) > 0 else float(new.alpha_sa)
    rm = float(new.alpha_mlp) / float(spec.alpha_mlp) if float(spec.alpha_mlp) > 0 else float(new.alpha_mlp)
    if ra <= 0:
        raise ValueError("α_SA = 0 cannot be realised by rescaling branch outputs")
    out = []
    if spec.norm == "post":
        return [(1.0 / ra, 1.0 / rm)] * depth
    c = 1.0
    for _ in range(depth):
        c *= ra
        fa = 1.0 / c
        if spec.block != "parallel":
            c *= rm
        out.append((fa, 1.0 / c))
    return out


def apply(diag: Any, model: Any, recommendation: dict[str, Any]) -> Any:
    """Apply ``recommendation`` (from :func:`recommend`) to ``model`` in place; returns the model.

    The model must have ``diag``'s architecture (e.g. built from the same config). ``qk_std = None`` in
    the recommendation keeps W_Q and W_K as they are (only α / centring are applied).
    """
    arch = diag.arch
    if arch is None:
        raise ValueError("this diagnosis has no architecture to apply a fix to")
    new = recommendation["spec"]
    blocks = layers_of(model, arch)
    if len(blocks) != diag.spec.depth:
        raise ValueError(f"model has {len(blocks)} blocks; the diagnosis has {diag.spec.depth}")
    factors = _alpha_factors(diag.spec, new, len(blocks))
    for block, (fa, fm) in zip(blocks, factors, strict=True):
        if recommendation.get("qk_std") is not None:
            _reinit_qk(block, arch, diag.effective.heads, float(recommendation["qk_std"]))
        if not math.isclose(fa, 1.0):
            _scale_module(get_path(block, arch.o), fa)
        if not math.isclose(fm, 1.0) and arch.mlp_out:
            _scale_module(get_path(block, arch.mlp_out), fm)
        if recommendation["attention"] == "centred":
            centre_attention(block, arch, diag.effective, causal=bool(diag.spec.causal))
    return model


def centre_attention(block: Any, arch: Any, eff: Any, *, causal: bool) -> list[Any]:
    """Make one block's attention centred with hooks: the output projection receives ``A V − mean V``
    (per head; the mean over the keys a row sees). Returns the hook handles."""
    import torch

    store: dict[str, torch.Tensor] = {}
    v_mod = get_path(block, arch.qkv or arch.v)
    o_mod = get_path(block, arch.o)
    heads, kv, dh = eff.heads, eff.kv_heads, eff.head_dim

    def grab(module: Any, args: tuple, output: torch.Tensor) -> None:
        v = output
        if arch.qkv:
            idx = fused_index(arch.qkv_layout, 2, 3, v.shape[-1], heads).to(v.device)
            v = v.index_select(-1, idx)
        B, T, _ = v.shape
        v = v.view(B, T, kv, dh)
        if causal:
            mean = v.cumsum(1) / torch.arange(1, T + 1, device=v.device, dtype=v.dtype)[None, :, None, None]
        else:
            mean = v.mean(1, keepdim=True).expand_as(v)
        store["mean"] = mean.repeat_interleave(heads // kv, dim=2).reshape(B, T, heads * dh)

    def centre(module: Any, args: tuple) -> tuple:
        x = args[0]
        return (x - store.pop("mean").to(x.dtype),) + tuple(args[1:])

    return [v_mod.register_forward_hook(grab), o_mod.register_forward_pre_hook(centre)]


def fixed_block(diag: Any, recommendation: dict[str, Any], *, seeds: int, batch: int = 2, device: str = "cpu",
                measure: bool = True, stream: bool | None = None) -> dict[str, Any]:
    """The ``fixed`` JSON block: the recommended Spec's label, verdict and predicted curves, and the
    measured curves of models built from the config and fixed with :func:`apply` (same seeds).

    ``stream``: as for :func:`sigprop.diagnose.diagnose` (``None``: stream above the 2 GiB threshold). A
    streamed config has no whole model to fix, so the fixed curves are then theory only (with a note);
    ``stream=False`` builds the fixed models whole."""
    from sigprop.diagnose.core import compare, predicted_rows
    from sigprop.diagram import verdict

    new = recommendation["spec"]
    v = verdict(new, gradients=False)
    pred = predicted_rows(new)
    meas = None
    notes = []
    if measure and seeds > 0:
        from sigprop.diagnose import core
        from sigprop.diagnose.probe import measure_rows, model_bytes

        big = diag.target.model is None and model_bytes(diag.target.config) > core.STREAM_BYTES
        if diag.target.model is None and (stream or (stream is None and big)):
            notes.append("the fixed model is not measured: the config streams (measured block by block, "
                         "no whole model to fix); build it whole with --no-stream, or check the fix on a "
                         "smaller --set")
        else:
            meas = measure_rows(diag, seeds=seeds, batch=batch, device=device, stream=False,
                                transform=lambda m: apply(diag, m, recommendation), spec=new)
    er, ee = compare(pred, meas)
    rec = {k: val for k, val in recommendation.items() if k != "spec"}
    return {"model_type": diag.model_type, "support": diag.support, "reasons": list(diag.reasons),
            "spec": new.to_dict(), "label": v.region, "verdict": v.text, "recommendation": rec, "predicted": pred,
            "measured": meas, "max_abs_err_rho": er, "max_abs_err_entropy": ee, "notes": notes,
            "rho_final": float(np.asarray(v.rho_final))}
