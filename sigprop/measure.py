"""Forward-hook probes: a tidy per-layer table of the quantities the signal-propagation theory predicts.

``measure(model, inputs_embeds=x)`` (or ``input_ids=..., attention_mask=...``) runs one forward pass with
hooks and returns a :class:`Measurement` whose ``layers[ℓ]`` describes the hidden state entering block
ℓ+1 (layer 0 = input of block 1, layer ℓ ≥ 1 = output of block ℓ) and, for ℓ ≥ 1, the attention matrix
of block ℓ.

Per layer, over the *selected* tokens of each sequence (non-padding, optionally only the last k of them),
each quantity computed per sequence and then averaged over the batch:

* ``cosine``: mean pairwise cosine similarity over distinct pairs (the paper's plotted ρ);
* ``rho_gram``: mean off-diagonal over mean diagonal entry of the Gram matrix ``X Xᵀ/d``, i.e. ``p/q``,
  the theory's mean-field ρ (differs from ``cosine`` when token norms fluctuate);
* ``q``: mean squared norm per dimension ``|x_t|²/d`` (1 after a LayerNorm);
* ``stable_rank``: ``‖X‖_F² / ‖X‖_2²`` of the ``n × d`` token matrix (1 at rank collapse);

and for ℓ ≥ 1, over the selected query rows, averaged over heads:

* ``attn_entropy``: Shannon entropy ``−Σ_s A_ts ln A_ts`` of a row (nats); ≈ ``S(β, ρ) ln T`` in theory;
* ``attn_entropy_norm``: row entropy / ``ln n_t`` with ``n_t`` the number of keys the row sees — real
  keys, s ≤ t if causal, and within the model's own attention mask (a sliding window) where the model
  hands one to its attention (rows with one key skipped): 1 = uniform (rank-collapsing phase), → 0 = entropy collapse;
* ``attn_y2``: ``Σ_s A_ts²`` (the participation ratio ``Y^{(2)}``);
* ``attn_singular_values`` (``spectra=True`` or an int k for the top k): singular values of the attention
  matrix of the first sequence (selected rows × its real keys), sorted per head and averaged over heads.

Hook points are found by an *adapter* (:func:`hook_points`), registered per model type with
:func:`register_adapter`. Built in: :class:`sigprop.nn.TransformerStack` (block outputs and
``block.attn.probs``) and a best-effort HuggingFace adapter (decoder/encoder layer lists, attentions from
``output_attentions=True``, which needs ``attn_implementation="eager"``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from torch import nn

__all__ = [
    "HookPoints",
    "Measurement",
    "attention_stats",
    "grad_norms",
    "keys_allowed",
    "hook_points",
    "measure",
    "register_adapter",
    "token_stats",
]


# ----------------------------------------------------------------------------------------- adapters
@dataclass
class HookPoints:
    """Where the probes attach in a model.

    blocks : the L block modules, in order; the probe reads the first positional argument (or the
        ``hidden_states`` keyword) of ``blocks[0]`` as layer 0 and the output (first element if a tuple)
        of ``blocks[ℓ-1]`` as layer ℓ.
    attention_probs : per block, a module whose forward output is the attention matrix ``A``
        (``(B, heads, T, T)``), or ``None`` entries when attentions come from the model output instead.
    causal : whether query row t sees only keys s ≤ t (for ``n_t`` in the normalised entropy).
    forward_kwargs : extra keyword arguments for the forward call (e.g. ``output_attentions=True``).
    attentions_from_output : maps the model output to a list of per-block ``A`` tensors (HF models).
    """

    blocks: list[nn.Module]
    attention_probs: list[nn.Module | None]
    causal: bool = False
    forward_kwargs: dict[str, Any] = field(default_factory=dict)
    attentions_from_output: Callable[[Any], Sequence[torch.Tensor]] | None = None


_ADAPTERS: list[tuple[Callable[[nn.Module], bool], Callable[[nn.Module], HookPoints]]] = []


def register_adapter(
    predicate: Callable[[nn.Module], bool], adapter: Callable[[nn.Module], HookPoints]
) -> None:
    """Teach :func:`measure` a new model family; adapters registered later take precedence."""
    _ADAPTERS.insert(0, (predicate, adapter))


def hook_points(model: nn.Module) -> HookPoints:
    """The :class:`HookPoints` of ``model`` from the first matching adapter (``TypeError`` if none)."""
    for predicate, adapter in _ADAPTERS:
        if predicate(model):
            return adapter(model)
    raise TypeError(
        f"sigprop.measure does not know where the blocks of a {type(model).__name__} are; "
        "register an adapter with sigprop.measure.register_adapter"
    )


def _is_stack(model: nn.Module) -> bool:
    from sigprop.nn.modules import TransformerStack

    return isinstance(model, TransformerStack)


def _stack_adapter(model: nn.Module) -> HookPoints:
    from sigprop.nn.modules import Block, TransformerStack

    assert isinstance(model, TransformerStack)  # registered with the _is_stack predicate
    blocks = cast("list[Block]", list(model.blocks))  # a stack's ModuleList holds only Blocks
    return HookPoints(
        blocks=list(blocks),
        attention_probs=[b.attn.probs for b in blocks],
        causal=bool(model.spec.causal),
    )


#: attribute paths of the block list in common HuggingFace architectures (causality is read from the model)
_HF_LAYER_PATHS: tuple[str, ...] = (
    "encoder.layer",  # BertModel, RobertaModel, ViTModel, ...
    "bert.encoder.layer", "roberta.encoder.layer", "vit.encoder.layer", "vit.layers",  # task-head wrappers
    "transformer.layer", "distilbert.transformer.layer",  # DistilBert
    "encoder.block",  # T5EncoderModel (T5Model's encoder stack)
    "decoder.layers", "model.decoder.layers",  # OPTModel, OPTForCausalLM
    "model.layers", "layers",  # Llama-style, ModernBert
    "transformer.h", "h",  # GPT-2
    "gpt_neox.layers",
)


def _get_path(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def _hf_layers(model: nn.Module) -> nn.ModuleList | None:
    for path in _HF_LAYER_PATHS:
        layers = _get_path(model, path)
        if isinstance(layers, nn.ModuleList) and len(layers):
            return layers
    # any other architecture: the first module list whose blocks hold an attention module (``is_causal``)
    for mod in model.modules():
        if isinstance(mod, nn.ModuleList) and len(mod) and any(
                isinstance(getattr(m, "is_causal", None), bool) for m in mod[0].modules()):
            return mod
    return None


def _is_hf(model: nn.Module) -> bool:
    return hasattr(model, "config") and _hf_layers(model) is not None


def hf_is_causal(model: nn.Module, block: nn.Module | None = None) -> bool:
    """Whether a HuggingFace model's self-attention is causal, read from the model, not guessed.

    Attention modules in current ``transformers`` carry ``is_causal``; the first self-attention module of
    the first block decides (cross-attention modules are skipped). Without one, ``config.is_decoder``.
    """
    if block is None:
        layers = _hf_layers(model)
        if layers is None:  # the TypeError indexing None raised before, with a message
            raise TypeError(f"{type(model).__name__} has no list of transformer blocks")
        block = layers[0]
    for name, mod in block.named_modules():
        flag = getattr(mod, "is_causal", None)
        if isinstance(flag, bool) and "cross" not in name.lower() and not getattr(mod, "is_cross_attention", False):
            return flag
    return bool(getattr(getattr(model, "config", None), "is_decoder", False))


def _hf_adapter(model: nn.Module) -> HookPoints:
    layers = _hf_layers(model)
    assert layers is not None
    return HookPoints(
        blocks=list(layers),
        attention_probs=[None] * len(layers),
        causal=hf_is_causal(model, layers[0]),
        forward_kwargs={"output_attentions": True},
        attentions_from_output=lambda out: list(getattr(out, "attentions", None) or []),
    )


register_adapter(_is_hf, _hf_adapter)
register_adapter(_is_stack, _stack_adapter)


# ------------------------------------------------------------------------------------------- stats
def _selection(token_mask: torch.Tensor, last_k: int | None) -> torch.Tensor:
    """``(B, T)`` bool: real tokens, and among them only the last ``last_k`` of each sequence if given."""
    sel = token_mask.bool()
    if last_k is not None:
        if last_k < 1:
            raise ValueError(f"last_k must be ≥ 1; got {last_k}")
        # rank of each real token counted from the end of its sequence (0 = last real token)
        from_end = sel.flip(-1).cumsum(-1).flip(-1) - 1
        sel = sel & (from_end < last_k)
    return sel


@torch.no_grad()
def token_stats(X: torch.Tensor, sel: torch.Tensor, *, stable_rank: bool = True) -> dict[str, float]:
    """``cosine``, ``rho_gram``, ``q``, ``stable_rank`` of hidden states ``X`` ``(B, T, d)`` over ``sel`` ``(B, T)``.

    Computed per sequence in float64, then averaged over the sequences that have ≥ 2 selected tokens
    (``q`` over those with ≥ 1). NaN if there are none. ``stable_rank=False`` skips the eigenvalue
    problem (``stable_rank`` is then NaN).
    """
    X = X.detach().to(torch.float64)
    d = X.shape[-1]
    cos, rho, qs, sr = [], [], [], []
    for b in range(X.shape[0]):
        Xb = X[b][sel[b]]
        n = Xb.shape[0]
        if n == 0:
            continue
        G = Xb @ Xb.T / d
        diag = torch.diagonal(G)
        q_b = diag.mean()
        qs.append(q_b.item())
        if n < 2:
            continue
        off = (G.sum() - diag.sum()) / (n * (n - 1))
        rho.append((off / q_b).item())
        inv = diag.clamp_min(torch.finfo(torch.float64).tiny).rsqrt()
        C = G * inv[:, None] * inv[None, :]
        cos.append(((C.sum() - torch.diagonal(C).sum()) / (n * (n - 1))).item())
        if stable_rank:
            top = torch.linalg.eigvalsh(G)[-1]
            sr.append((diag.sum() / top).item() if top > 0 else math.nan)

    def mean(v: list[float]) -> float:
        return sum(v) / len(v) if v else math.nan

    return {"cosine": mean(cos), "rho_gram": mean(rho), "q": mean(qs), "stable_rank": mean(sr)}


#: an additive attention mask entry at or below this masks its key (HF: the dtype's min, −inf or −10⁴)
MASKED_BELOW = -1e4


def keys_allowed(mask: Any, T: int) -> torch.Tensor | None:
    """Boolean ``(B or 1, 1 or H, T, T)`` mask, True where query row t may attend to key s, from the
    attention mask a model hands its attention (HuggingFace blocks: the ``attention_mask`` keyword, with
    causal, sliding-window and padding masks folded in; the twin: the mask its ``probs`` module receives).
    Boolean masks are taken as they are, additive float masks mask entries ≤ :data:`MASKED_BELOW`.
    ``None`` when ``mask`` is not a ``(…, T, T)`` tensor (no mask, or one this cannot read)."""
    if not isinstance(mask, torch.Tensor) or mask.ndim != 4 or tuple(mask.shape[-2:]) != (T, T):
        return None
    if mask.dtype == torch.bool:
        return mask
    if not mask.is_floating_point():
        return mask != 0
    return mask > MASKED_BELOW


def _keys_seen(token_mask: torch.Tensor, causal: bool, allowed: torch.Tensor | None = None) -> torch.Tensor:
    """``(B, 1 or H, T)``: the number of keys n_t query row t sees — the real keys (``token_mask``), only
    s ≤ t when ``causal``, and only those the model's own mask ``allowed`` (:func:`keys_allowed`) lets
    it attend to, e.g. a sliding window: ``min(t, W)`` keys for a causal window W (Mistral), the clipped
    band for a local one (ModernBERT)."""
    if allowed is None:
        km = token_mask.to(torch.float64)
        return (km.cumsum(-1) if causal else km.sum(-1, keepdim=True).expand_as(km))[:, None, :]
    T = token_mask.shape[-1]
    vis = allowed.to(device=token_mask.device, dtype=torch.bool) & token_mask.bool()[:, None, None, :]
    if causal:
        vis = vis & torch.ones(T, T, dtype=torch.bool, device=vis.device).tril()
    return vis.sum(-1).to(torch.float64)


@torch.no_grad()
def attention_stats(
    A: torch.Tensor, sel: torch.Tensor, token_mask: torch.Tensor, *, causal: bool, spectra: bool | int = False,
    allowed: torch.Tensor | None = None,
) -> dict[str, Any]:
    """``attn_entropy``, ``attn_entropy_norm``, ``attn_y2`` (and singular values) of ``A`` ``(B, H, T, T)``.

    Averages over the selected query rows ``sel`` ``(B, T)`` of every head; ``token_mask`` ``(B, T)`` marks
    the real keys, ``causal`` whether row t sees only s ≤ t, ``allowed`` (optional, :func:`keys_allowed`)
    the keys the model's mask lets row t see (a sliding window): ``attn_entropy_norm`` divides by ln n_t
    of exactly those keys, so uniform attention over a window reads 1.
    """
    A = A.detach().to(torch.float64)
    if A.ndim == 3:
        A = A[:, None]
    B, H, T, _ = A.shape
    ent = -torch.xlogy(A, A).sum(-1)  # (B, H, T)
    y2 = (A * A).sum(-1)
    n_keys = _keys_seen(token_mask, causal, allowed).expand(B, H, T)
    rows = sel[:, None, :].expand(B, H, T)
    multi = rows & (n_keys > 1.5)
    out: dict[str, Any] = {
        "attn_entropy": ent[rows].mean().item() if rows.any() else math.nan,
        "attn_entropy_norm": (ent[multi] / n_keys[multi].log()).mean().item() if multi.any() else math.nan,
        "attn_y2": y2[rows].mean().item() if rows.any() else math.nan,
    }
    if spectra:
        keys = token_mask[0].bool()
        sub = A[0][:, sel[0]][:, :, keys]  # (H, rows, keys)
        sv = torch.linalg.svdvals(sub).mean(0) if sub.numel() else torch.empty(0, dtype=torch.float64)
        if not isinstance(spectra, bool):
            sv = sv[: int(spectra)]
        out["attn_singular_values"] = sv.tolist()
    return out


# --------------------------------------------------------------------------------------- measurement
@dataclass
class Measurement:
    """Per-layer probe results: ``layers[ℓ]`` is a dict (see module docstring); ``meta`` the settings."""

    layers: list[dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)
    output: Any = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, key: str) -> list[Any]:
        """Column ``key`` across layers, e.g. ``m["cosine"]``."""
        return [row.get(key, math.nan) for row in self.layers]

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly ``{"layers": [...], "meta": {...}}``."""
        return {"layers": [dict(r) for r in self.layers], "meta": dict(self.meta)}

    def to_frame(self):
        """A ``pandas.DataFrame`` with one row per layer (needs pandas)."""
        import pandas as pd

        return pd.DataFrame(self.layers).set_index("layer")


def _attn_impl(model: nn.Module) -> str | None:
    cfg = getattr(model, "config", None)
    return getattr(cfg, "_attn_implementation", None) if cfg is not None else None


@contextlib.contextmanager
def _eager_attention(model: nn.Module, points: HookPoints) -> Iterator[None]:
    """Run a HuggingFace model with eager attention (the only kind that returns probabilities), then
    restore the implementation it was built with — also when the forward raises.

    sdpa / flash attention compute the same softmax without materialising it, so ``output_attentions``
    silently yields nothing; eager gives the same outputs to float rounding.
    """
    impl = _attn_impl(model) if points.attentions_from_output is not None else None
    if impl is None or impl == "eager":
        yield
        return
    setter = getattr(model, "set_attn_implementation", None)
    if setter is None:
        raise ValueError(f"{type(model).__name__} uses attn_implementation={impl!r}, which returns no attention "
                         "probabilities, and cannot be switched to 'eager'; build it with attn_implementation='eager'")
    setter("eager")
    try:
        yield
    finally:
        setter(impl)


# long: the probe hooks are closures over this call's masks and per-layer results
def measure(
    model: nn.Module,
    *,
    input_ids: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    inputs_embeds: torch.Tensor | None = None,
    last_k: int | None = None,
    spectra: bool | int = False,
    no_grad: bool = True,
    pixel_values: torch.Tensor | None = None,
    stable_rank: bool = True,
    **forward_kwargs: Any,
) -> Measurement:
    """Run ``model`` once with probes attached and return the per-layer :class:`Measurement`.

    ``attention_mask`` ``(B, T)`` (1 = real token) is passed to the model and excludes padding from every
    statistic; ``last_k`` restricts token pairs and attention query rows to the last k real tokens of each
    sequence (decoder plots, docs/theory.md §7). Hooks never modify activations and are always removed, also when
    the forward raises. Runs under ``torch.no_grad()`` unless ``no_grad=False``; ``Measurement.output`` is
    the model's return value. Vision models take ``pixel_values`` ``(B, C, H, W)`` instead (every patch
    token counts; the number of tokens is read from the first block's input). ``stable_rank=False``
    skips the per-layer eigenvalue problem (NaN in that column).
    """
    if sum(x is not None for x in (input_ids, inputs_embeds, pixel_values)) != 1:
        raise ValueError("pass exactly one of input_ids, inputs_embeds and pixel_values")
    if pixel_values is not None and attention_mask is not None:
        raise ValueError("attention_mask is not used with pixel_values")
    points = hook_points(model)
    ref = next(x for x in (input_ids, inputs_embeds, pixel_values) if x is not None)
    B = ref.shape[0]
    masks: dict[str, torch.Tensor] = {}

    def set_masks(T: int) -> None:
        token_mask = (torch.ones(B, T, dtype=torch.bool, device=ref.device) if attention_mask is None
                      else attention_mask.bool())
        masks["token"], masks["sel"] = token_mask, _selection(token_mask, last_k)

    if pixel_values is None:
        set_masks(ref.shape[1])
    L = len(points.blocks)
    states: list[dict[str, float] | None] = [None] * (L + 1)
    attn: list[dict[str, Any] | None] = [None] * (L + 1)

    def on_input(module: nn.Module, args: tuple, kwargs: dict) -> None:
        x = args[0] if args else kwargs.get("hidden_states")
        assert x is not None, "the first block was called without hidden states"
        if "sel" not in masks:
            set_masks(x.shape[1])
        states[0] = token_stats(x, masks["sel"], stable_rank=stable_rank)

    def on_block(i: int) -> Callable:
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            x = output[0] if isinstance(output, (tuple, list)) else output
            states[i] = token_stats(x, masks["sel"], stable_rank=stable_rank)

        return hook

    block_masks: dict[int, Any] = {}  # the attention mask each HF block was handed (sliding windows, …)

    def on_probs(i: int) -> Callable:
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            allowed = keys_allowed(args[1] if len(args) > 1 else None, output.shape[-1])
            attn[i] = attention_stats(output, masks["sel"], masks["token"], causal=points.causal, spectra=spectra,
                                      allowed=allowed)

        return hook

    def on_mask(i: int) -> Callable:
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            block_masks[i] = kwargs.get("attention_mask")

        return hook

    handles = []
    try:
        if L:
            handles.append(points.blocks[0].register_forward_pre_hook(on_input, with_kwargs=True))
        for i, block in enumerate(points.blocks, start=1):
            handles.append(block.register_forward_hook(on_block(i)))
        for i, probs in enumerate(points.attention_probs, start=1):
            if probs is not None:
                handles.append(probs.register_forward_hook(on_probs(i)))
            elif points.attentions_from_output is not None:
                handles.append(points.blocks[i - 1].register_forward_pre_hook(on_mask(i), with_kwargs=True))
        kwargs = {**points.forward_kwargs, **forward_kwargs, "attention_mask": attention_mask}
        if attention_mask is None:
            del kwargs["attention_mask"]
        for name, value in (("input_ids", input_ids), ("pixel_values", pixel_values), ("inputs_embeds", inputs_embeds)):
            if value is not None:
                kwargs[name] = value
        with torch.no_grad() if no_grad else torch.enable_grad(), _eager_attention(model, points):
            output = model(**kwargs)
            if points.attentions_from_output is not None:
                for i, A in enumerate(points.attentions_from_output(output), start=1):
                    if A is not None and attn[i] is None:
                        if "sel" not in masks:
                            set_masks(A.shape[-1])
                        attn[i] = attention_stats(A, masks["sel"], masks["token"], causal=points.causal, spectra=spectra,
                                                  allowed=keys_allowed(block_masks.get(i), A.shape[-1]))
    finally:
        for h in handles:
            h.remove()

    if points.attentions_from_output is not None and L and all(a is None for a in attn[1:]):
        raise ValueError(f"{type(model).__name__} returned no attention probabilities (attention implementation "
                         f"{_attn_impl(model)!r}); build it with attn_implementation='eager' to probe attention")
    meta = {
        "batch": B,
        "seq_len": int(masks["token"].shape[1]) if "token" in masks else None,
        "last_k": last_k,
        "causal": points.causal,
        "model": type(model).__name__,
    }
    return Measurement(layers=_rows(states, attn, spectra), meta=meta, output=output)


def _rows(states: list[dict[str, float] | None], attn: list[dict[str, Any] | None], spectra: bool | int) -> list[dict[str, Any]]:
    """One row per layer from the token and attention statistics (NaN where a probe saw nothing)."""
    empty_attn: dict[str, Any] = {"attn_entropy": math.nan, "attn_entropy_norm": math.nan, "attn_y2": math.nan}
    if spectra:
        empty_attn["attn_singular_values"] = None
    layers = []
    for i in range(len(states)):
        row: dict[str, Any] = {"layer": i}
        row.update(
            states[i] or {"cosine": math.nan, "rho_gram": math.nan, "q": math.nan, "stable_rank": math.nan}
        )
        attn_i = attn[i]
        row.update(attn_i if attn_i is not None else empty_attn)
        layers.append(row)
    return layers


def grad_norms(model: nn.Module) -> dict[str, float]:
    """Frobenius norm of each parameter's ``.grad`` (after a backward); parameters without a grad are skipped."""
    return {name: p.grad.detach().norm().item() for name, p in model.named_parameters() if p.grad is not None}
