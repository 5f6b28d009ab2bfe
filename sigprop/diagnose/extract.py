"""Effective parameters of a model as initialised, and the effective :class:`sigprop.Spec` they make.

Two ways to read the weights, with one code path after that:

* **measured** — a built model: the second moment of every role's weights (``mean(W²)``, so custom
  initialisations count);
* **recorded** — a ``transformers`` config: the model is built on the ``meta`` device (no memory) and
  its own ``_init_weights`` is run with the init primitives replaced by recorders, which keep the
  distribution each tensor would get (normal, truncated normal, uniform, constant, …). This is exact for
  every architecture whose init goes through ``transformers.initialization`` and allocates nothing, so a
  7B-parameter config is diagnosed in a second.

The mapping to the theory's fields (docs/diagnose.md, arXiv 2505.24333 conventions of docs/theory.md §1):

* β = σ_Q σ_K d · s √d_h / √ln T (s the logit scale: d_h^{-1/2}, T5: 1), so that the within-row logit
  variance of unit-norm tokens is β² ln T;
* σ_v² (effective) = (σ_V² d)(σ_O² d_inner); value/output biases give σ_bv² = σ_O² d_inner σ_bV² + σ_bO²;
* σ_w² = σ_in² d (σ_gate² d for a gated MLP), σ_w,out² = σ_out² d_ff (× σ_up²/σ_gate² when gated);
* post-LN: LayerNorm is scale invariant, so the MLP output scale is an α_MLP = √(σ_w²/σ_w,out²) and the
  Spec keeps σ_w,out² = σ_w²; pre-LN keeps σ_w,out² and takes q₀ from the embeddings.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sigprop.diagnose.archs import Arch

__all__ = ["Effective", "Reader", "effective", "get_path", "layers_of", "recorded_init", "role_weight"]


def get_path(obj: Any, path: str | None) -> Any:
    """``obj.a.b.c`` for ``path = "a.b.c"`` (integers index module lists); ``None`` if any step is missing."""
    if path is None:
        return None
    for part in path.split("."):
        if part.isdigit() and hasattr(obj, "__getitem__"):
            try:
                obj = obj[int(part)]
            except (IndexError, KeyError, TypeError):
                return None
        else:
            obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def layers_of(model: Any, arch: Arch) -> list[Any]:
    """The block list of ``model`` from the first of ``arch.layers`` that exists."""
    for path in arch.layers:
        layers = get_path(model, path)
        if layers is not None and len(layers):
            return list(layers)
    raise ValueError(f"no block list found at {arch.layers} in {type(model).__name__}")


# ------------------------------------------------------------------------------------ init recording
def _trunc_moments(mean: float, std: float, a: float, b: float) -> tuple[float, float]:
    from scipy import stats

    lo, hi = (a - mean) / std, (b - mean) / std
    m, v = stats.truncnorm.stats(lo, hi, loc=mean, scale=std, moments="mv")
    return float(m), float(v)


def _fan(tensor: Any, mode: str) -> int:
    from torch.nn import init

    fan_in, fan_out = init._calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def _moments(name: str, tensor: Any, args: tuple, kw: dict) -> tuple[float, float] | None:
    """(mean, variance) of the distribution an init primitive would draw ``tensor`` from."""
    from torch.nn import init

    def arg(i: int, key: str, default: Any) -> Any:
        return args[i] if len(args) > i else kw.get(key, default)

    if name == "normal_":
        return float(arg(0, "mean", 0.0)), float(arg(1, "std", 1.0)) ** 2
    if name == "trunc_normal_":
        mean, std = float(arg(0, "mean", 0.0)), float(arg(1, "std", 1.0))
        return _trunc_moments(mean, std, float(arg(2, "a", -2.0)), float(arg(3, "b", 2.0)))
    if name == "uniform_":
        a, b = float(arg(0, "a", 0.0)), float(arg(1, "b", 1.0))
        return (a + b) / 2, (b - a) ** 2 / 12
    if name in ("constant_", "ones_", "zeros_"):
        return {"ones_": 1.0, "zeros_": 0.0}.get(name, float(arg(0, "val", 0.0))), 0.0
    if name in ("xavier_uniform_", "xavier_normal_"):
        fi, fo = _fan(tensor, "fan_in"), _fan(tensor, "fan_out")
        return 0.0, float(arg(0, "gain", 1.0)) ** 2 * 2.0 / (fi + fo)
    if name in ("kaiming_uniform_", "kaiming_normal_"):
        a, mode, nl = arg(0, "a", 0.0), arg(1, "mode", "fan_in"), arg(2, "nonlinearity", "leaky_relu")
        gain = init.calculate_gain(nl, a)
        return 0.0, gain**2 / _fan(tensor, mode)
    if name == "orthogonal_":
        return 0.0, float(arg(0, "gain", 1.0)) ** 2 / max(tensor.shape[0], int(np.prod(tensor.shape[1:])))
    return None


@contextlib.contextmanager
def _recording(store: dict[int, tuple[float, float] | None]) -> Iterator[None]:
    from transformers import initialization as hf_init

    saved = dict(hf_init.TORCH_INIT_FUNCTIONS)
    saved_copy = getattr(hf_init, "copy_", None)

    def recorder(name: str):
        def fn(tensor, *args, **kw):
            store[id(tensor)] = _moments(name, tensor, args, kw)
            return tensor

        return fn

    def copy_rec(tensor, other):
        o = other.detach().double() if getattr(other, "device", None) is not None and other.device.type != "meta" else None
        store[id(tensor)] = (float(o.mean()), float(o.var(unbiased=False))) if o is not None and o.numel() else None
        return tensor

    for n in saved:
        hf_init.TORCH_INIT_FUNCTIONS[n] = recorder(n)
    if saved_copy is not None:
        hf_init.copy_ = copy_rec
    try:
        yield
    finally:
        hf_init.TORCH_INIT_FUNCTIONS.update(saved)
        if saved_copy is not None:
            hf_init.copy_ = saved_copy


def recorded_init(config: Any, build: Any) -> tuple[Any, dict[int, tuple[float, float] | None]]:
    """Build the model of ``config`` on the ``meta`` device and record, per parameter, the (mean,
    variance) its own ``_init_weights`` would draw it from. Nothing is allocated."""
    import torch

    store: dict[int, tuple[float, float] | None] = {}
    with torch.device("meta"):
        model = build(config)
    with _recording(store):
        model.initialize_weights()
    return model, store


# ------------------------------------------------------------------------------------ reading weights
class Reader:
    """Second moments ``E[w²]`` of (slices of) parameters: measured on real tensors, or from the recorded
    init distribution of a meta model (:func:`recorded_init`)."""

    def __init__(self, recorded: dict[int, tuple[float, float] | None] | None = None) -> None:
        self.recorded = recorded

    def moments(self, tensor: Any, index: Any = None) -> tuple[float, float]:
        """(mean, mean square) of ``tensor`` (rows ``index`` of its output-feature view if given)."""
        if tensor is None:
            return 0.0, 0.0
        if tensor.device.type == "meta":
            rec = (self.recorded or {}).get(id(tensor))
            if rec is None:
                raise ValueError(f"no recorded initialisation for a parameter of shape {tuple(tensor.shape)}; "
                                 "diagnose a built model instead")
            mean, var = rec
            return mean, var + mean * mean
        w = tensor.detach()
        if index is not None:
            w = w[index]
        w = w.double()
        return float(w.mean()), float((w * w).mean())

    def ms(self, tensor: Any, index: Any = None) -> float:
        return self.moments(tensor, index)[1]


def role_weight(module: Any) -> tuple[Any, bool]:
    """``(weight, transposed)``: a Linear stores (out, in); GPT-2's Conv1D stores (in, out)."""
    w = module.weight
    return w, type(module).__name__ == "Conv1D"


def _out_features(module: Any) -> int:
    w, tr = role_weight(module)
    return int(w.shape[1] if tr else w.shape[0])


def _in_features(module: Any) -> int:
    w, tr = role_weight(module)
    if w.ndim > 2:  # convolution: fan-in of one output channel
        return int(np.prod(w.shape[1:]))
    return int(w.shape[0] if tr else w.shape[1])


def fused_index(layout: str, part: int, n_parts: int, out: int, heads: int) -> Any:
    """Output-feature indices of part ``part`` (0 = q / gate, 1 = k / up, 2 = v) of a fused projection."""
    import torch

    if layout == "concat":
        size = out // n_parts
        return torch.arange(part * size, (part + 1) * size)
    d_h = out // (n_parts * heads)
    idx = torch.arange(out).view(heads, n_parts, d_h)[:, part, :]
    return idx.reshape(-1)


def _weight_moments(reader: Reader, module: Any, index: Any = None) -> tuple[float, float]:
    w, tr = role_weight(module)
    if index is None or w.device.type == "meta":
        return reader.moments(w)
    return reader.moments(w.T if tr else w, index)


def _bias_ms(reader: Reader, module: Any, index: Any = None) -> float:
    b = getattr(module, "bias", None)
    if b is None:
        return 0.0
    if index is None or b.device.type == "meta":
        return reader.ms(b)
    return reader.ms(b, index)


# ------------------------------------------------------------------------------------ per-layer values
@dataclass
class LayerParams:
    """Second moments of one block's roles (``ms_*``) and their bias second moments (``bias_*``)."""

    ms: dict[str, float]
    bias: dict[str, float]
    norm_dev: float  # largest |γ − 1| or |b| of the block's norms
    mean_abs: float  # largest |mean| of a role weight relative to its rms


def _layer(reader: Reader, block: Any, arch: Arch, heads: int) -> LayerParams:
    ms: dict[str, float] = {}
    bias: dict[str, float] = {}
    worst_mean = 0.0

    def take(role: str, module: Any, index: Any = None) -> None:
        nonlocal worst_mean
        mean, m2 = _weight_moments(reader, module, index)
        ms[role] = m2
        bias[role] = _bias_ms(reader, module, index)
        if m2 > 0:
            worst_mean = max(worst_mean, abs(mean) / math.sqrt(m2))

    if arch.qkv:
        mod = get_path(block, arch.qkv)
        out = _out_features(mod)
        for i, role in enumerate(("q", "k", "v")):
            take(role, mod, fused_index(arch.qkv_layout, i, 3, out, heads))
    else:
        for role in ("q", "k", "v"):
            take(role, get_path(block, getattr(arch, role)))
    take("o", get_path(block, arch.o))
    if arch.mlp_in_gate:
        mod = get_path(block, arch.mlp_in_gate)
        out = _out_features(mod)
        take("mlp_gate", mod, fused_index("concat", 0, 2, out, 1))
        take("mlp_in", mod, fused_index("concat", 1, 2, out, 1))
    else:
        for role in ("mlp_in", "mlp_gate"):
            mod = get_path(block, getattr(arch, role))
            if mod is not None:
                take(role, mod)
    mod = get_path(block, arch.mlp_out)
    if mod is not None:
        take("mlp_out", mod)
    dev = 0.0
    for name, m in block.named_modules():
        if "norm" in type(m).__name__.lower() or "layer_norm" in name.lower() or "layernorm" in name.lower():
            w = getattr(m, "weight", None)
            if w is not None:
                mean, m2 = reader.moments(w)
                dev = max(dev, math.sqrt(max(m2 - 2 * mean + 1.0, 0.0)))
            b = getattr(m, "bias", None)
            if b is not None:
                dev = max(dev, math.sqrt(reader.ms(b)))
    return LayerParams(ms, bias, dev, worst_mean)


@dataclass
class Effective:
    """What a model's init means for the theory: per-layer effective values and the stack's facts."""

    model_type: str
    arch: str
    width: int
    heads: int
    kv_heads: int
    head_dim: int
    inner: int
    d_ff: int
    depth: int
    logit_scale: float
    settings: dict[str, Any]
    beta_unit: np.ndarray  # per layer: σ_Q σ_K d s √d_h (β · √ln T)
    sigma_v2: np.ndarray
    sigma_bv2: np.ndarray
    sigma_w2: np.ndarray
    sigma_w2_out: np.ndarray
    sigma_b2: np.ndarray
    q0: float
    p0: float
    embed_norm: bool
    reasons: list[str] = field(default_factory=list)
    layers: list[LayerParams] = field(default_factory=list, repr=False)

    @property
    def gated(self) -> bool:
        return self.settings["activation"] in ("swiglu", "geglu")


def _heads(config: Any, block: Any, arch: Arch, width: int) -> tuple[int, int, int]:
    attn = get_path(block, arch.attn) if arch.attn else None
    heads = None
    for src in (config, attn):
        for n in ("num_attention_heads", "n_head", "num_heads", "n_heads"):
            v = getattr(src, n, None) if src is not None else None
            if isinstance(v, int) and v > 0:
                heads = v
                break
        if heads:
            break
    if heads is None:
        raise ValueError("cannot read the number of attention heads from the config or the attention module")
    kv = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "d_kv", None) or getattr(config, "head_dim", None) or getattr(attn, "head_dim", None) or width // heads
    return int(heads), int(kv), int(head_dim)


def _logit_scale(settings: dict[str, Any], block: Any, arch: Arch, head_dim: int) -> float:
    if settings.get("logit_scale") is not None:
        return float(settings["logit_scale"])
    attn = get_path(block, arch.attn) if arch.attn else None
    s = getattr(attn, "scaling", None)
    if isinstance(s, (int, float)) and s > 0:
        return float(s)
    return head_dim**-0.5


def _embeddings(reader: Reader, model: Any, arch: Arch) -> tuple[float, float]:
    """(q₀, p₀) of the tokens entering block 1 before any embedding norm: the sum of the embedding tables'
    second moments, with tables every token shares (token type) in p₀ too. A patch embedding (ViT) of
    N(0, 1) pixels adds σ_conv² · fan-in."""
    q = p = 0.0
    for path, shared in arch.embeddings:
        mod = get_path(model, path)
        if mod is None:
            continue
        w = mod if not hasattr(mod, "weight") else mod.weight
        m2 = reader.ms(w)
        q += m2
        if shared:
            p += m2
    if arch.patch:
        conv = get_path(model, arch.patch)
        if conv is not None:
            q += reader.ms(conv.weight) * _in_features(conv) + _bias_ms(reader, conv)
    return q, p


def effective(model: Any, config: Any, arch: Arch, reader: Reader, model_type: str) -> Effective:
    """Effective per-layer values of ``model`` (built, or on ``meta`` with ``reader`` holding the
    recorded init) for ``arch``."""
    settings = arch.settings(config)
    blocks = layers_of(model, arch)
    first = blocks[0]
    if arch.qkv:
        width = _in_features(get_path(first, arch.qkv))
    else:
        width = _in_features(get_path(first, arch.q))
    heads, kv, head_dim = _heads(config, first, arch, width)
    inner = _in_features(get_path(first, arch.o))
    s = _logit_scale(settings, first, arch, head_dim)
    out_mod = get_path(first, arch.mlp_out)
    d_ff = _in_features(out_mod) if out_mod is not None else 0
    layers = [_layer(reader, b, arch, heads) for b in blocks]
    gated = settings["activation"] in ("swiglu", "geglu")

    def col(role: str) -> np.ndarray:
        return np.array([lp.ms.get(role, 0.0) for lp in layers])

    def bcol(role: str) -> np.ndarray:
        return np.array([lp.bias.get(role, 0.0) for lp in layers])

    beta_unit = np.sqrt(col("q") * col("k")) * width * s * math.sqrt(head_dim)
    sigma_v2 = col("v") * width * col("o") * inner
    sigma_bv2 = col("o") * inner * bcol("v") + bcol("o")
    if gated:
        g, u = col("mlp_gate"), col("mlp_in")
        sigma_w2 = g * width
        sigma_w2_out = col("mlp_out") * d_ff * np.where(g > 0, u / np.where(g > 0, g, 1.0), 0.0)
        sigma_b2 = bcol("mlp_gate")
    else:
        sigma_w2 = col("mlp_in") * width
        sigma_w2_out = col("mlp_out") * d_ff
        sigma_b2 = bcol("mlp_in")
    q0, p0 = _embeddings(reader, model, arch)
    reasons = list(settings.get("reasons", []))
    eff = Effective(model_type, arch.name, width, heads, kv, head_dim, inner, d_ff, len(blocks), s, settings,
                    beta_unit, sigma_v2, sigma_bv2, sigma_w2, sigma_w2_out, sigma_b2, q0, p0,
                    get_path(model, arch.embed_norm) is not None if arch.embed_norm else False, reasons, layers)
    _check_biases_and_norms(eff, bcol)
    return eff


def _check_biases_and_norms(eff: Effective, bcol: Any) -> None:
    """Reasons for what the Spec cannot hold exactly: Q/K biases, norm affines away from identity,
    MLP output biases that differ from the input ones, weights with a mean, per-layer spread."""
    qk_bias = float(np.max(bcol("q") + bcol("k")))
    if qk_bias > 0:
        ratio = qk_bias / max(float(np.min(eff.beta_unit)), 1e-30)
        eff.reasons.append(f"query/key biases are non-zero (second moment {qk_bias:.3g}); the theory has none")
        del ratio
    dev = max(lp.norm_dev for lp in eff.layers)
    if dev > 1e-6:
        eff.reasons.append(f"norm affine parameters differ from the identity by up to {dev:.3g}")
    mean = max(lp.mean_abs for lp in eff.layers)
    if mean > 0.05:
        eff.reasons.append(f"weights have a non-zero mean (|mean|/rms up to {mean:.2f}); the theory assumes zero-mean weights")
    bout = bcol("mlp_out")
    if np.any(np.abs(bout - eff.sigma_b2) > 1e-12 + 0.05 * eff.sigma_b2):
        eff.reasons.append("MLP output bias variance differs from the input one; the theory uses the input one for both")
    for name, arr in (("β", eff.beta_unit), ("σ_v²", eff.sigma_v2), ("σ_w²", eff.sigma_w2), ("σ_w,out²", eff.sigma_w2_out)):
        m = float(np.mean(arr))
        if m > 0 and float(np.max(np.abs(arr - m))) > 0.02 * m:
            eff.reasons.append(f"per-layer {name} differs by more than 2% across layers ({float(np.min(arr)):.3g}–"
                               f"{float(np.max(arr)):.3g}); the theory uses the mean")
