"""Measure a HuggingFace model at full width without holding it: one block at a time.

A Llama-2-7B shape needs 27 GB in float32, yet the signal-propagation probe only ever looks at one block.
:func:`stream_measure` builds the model on the ``meta`` device (no memory), materialises the embedding and
the other non-block modules, and replaces each block of the layer list by a stand-in. The model's own
``forward`` then runs as usual — the same attention masks (causal, sliding window), rotary tables, position
ids and relative position biases, passed to each block exactly as that architecture passes them — and the
stand-in for block ℓ

1. materialises block ℓ on the CPU and initialises it with the model's own ``_init_weights`` (children
   before parents, as ``transformers`` does) from its own seed,
2. moves it to ``device`` / ``dtype``, runs it with probes on its attention probabilities,
3. frees it (back to ``meta``) and hands the hidden state on.

Peak memory is therefore the non-block modules (the token embedding) plus one block plus activations.

Seeding: with seed ``s`` the non-block modules are initialised from :func:`shell_seed` ``(s)`` and block ℓ
(0-based) from :func:`block_seed` ``(s, ℓ)``, so every block's weights are independent of whether the others
exist. :func:`init_streamed` gives a fully built model exactly these weights, which makes
``sigprop.measure.measure(init_streamed(model, seed=s), input_ids=random_input_ids(config, ..., seed=s))`` an
independent check of the streaming (the tests compare them to 1e-5).

The statistics per layer are those of :mod:`sigprop.measure` (``token_stats``, ``attention_stats``): layer 0
is the hidden state entering block 1, layer ℓ ≥ 1 the output of block ℓ with the attention of block ℓ; token
cosine ρ, ``rho_gram`` (p/q), q, stable rank, attention entropy, entropy / ln n_t (n_t keys seen by row t),
and Y⁽²⁾ — over all tokens, and with ``last_k`` also over the last k tokens (decoders, docs/theory.md §7).
"""

from __future__ import annotations

import copy
import inspect
import math
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from sigprop.measure import attention_stats, hf_is_causal, hook_points, keys_allowed, token_stats

__all__ = ["STAT_KEYS", "block_seed", "init_streamed", "peak_rss_mb", "random_input_ids", "shell_seed", "stream_measure"]

#: per-layer statistics reported (each also as ``<key>_last`` when ``last_k`` is given)
STAT_KEYS = ("cosine", "rho_gram", "q", "stable_rank", "attn_entropy", "attn_entropy_norm", "attn_y2")

#: encoder-decoder model types whose encoder alone is streamed (a self-attention stack)
_ENCODER_ONLY = {"t5": "T5EncoderModel", "mt5": "MT5EncoderModel", "umt5": "UMT5EncoderModel"}

_PRIME = 1_000_003


def shell_seed(seed: int) -> int:
    """Seed of the non-block modules (embeddings, final norm, ...) for run seed ``seed``."""
    return int(seed) * _PRIME


def block_seed(seed: int, index: int) -> int:
    """Seed of block ``index`` (0-based) for run seed ``seed``."""
    return int(seed) * _PRIME + int(index) + 1


def random_input_ids(config: Any, *, seq_len: int, batch: int = 1, seed: int = 0) -> torch.Tensor:
    """``(batch, seq_len)`` token ids uniform over ``config.vocab_size``, from a generator seeded by ``seed``."""
    vocab = getattr(config, "vocab_size", None)
    if not isinstance(vocab, int) or vocab < 1:
        raise ValueError(f"config has no usable vocab_size (got {vocab!r}); stream_measure needs a text model")
    g = torch.Generator().manual_seed(int(seed) * 7919 + 13)
    return torch.randint(0, vocab, (batch, seq_len), generator=g)


# ------------------------------------------------------------------------------------------ init
def _postorder(root: nn.Module, skip: set[int]) -> list[nn.Module]:
    """Modules under ``root`` children-first (the order of ``transformers``' ``smart_apply``), minus ``skip``."""
    out: list[nn.Module] = []

    def visit(m: nn.Module) -> None:
        if id(m) in skip:
            return
        for child in m.children():
            visit(child)
        out.append(m)

    visit(root)
    return out


def _init_modules(model: Any, modules: list[nn.Module], seed: int) -> None:
    """Initialise ``modules`` in order with ``model``'s own ``_init_weights``, the CPU generator seeded by ``seed``.

    The ``_is_hf_initialized`` marks that ``transformers`` leaves on modules and tensors are cleared first, so
    this re-initialises also a model that was initialised before. The global RNG state is restored after.
    """
    from transformers import initialization as hf_init

    for m in modules:
        if "_is_hf_initialized" in m.__dict__:
            del m._is_hf_initialized
        for t in list(m.parameters(recurse=False)) + [b for b in m.buffers(recurse=False) if b is not None]:
            if hasattr(t, "_is_hf_initialized"):
                del t._is_hf_initialized
    with torch.random.fork_rng(devices=[]), torch.no_grad(), hf_init.guard_torch_init_functions():
        torch.manual_seed(seed)
        for m in modules:
            model._initialize_weights(m)


def _block_list(model: nn.Module) -> nn.ModuleList:
    """The ``nn.ModuleList`` holding the blocks that ``sigprop.measure`` probes."""
    blocks = hook_points(model).blocks
    for m in model.modules():
        if isinstance(m, nn.ModuleList) and len(m) == len(blocks) and all(a is b for a, b in zip(m, blocks, strict=True)):
            return m
    raise ValueError(f"could not find the block list of {type(model).__name__}")


def init_streamed(model: nn.Module, *, seed: int = 0) -> nn.Module:
    """Re-initialise a fully built HuggingFace ``model`` in place exactly as :func:`stream_measure` does for ``seed``.

    Non-block modules from :func:`shell_seed` ``(seed)``, block ℓ from :func:`block_seed` ``(seed, ℓ)``, each
    with the model's own ``_init_weights``. Returns ``model``. Weights must be on the CPU in float32 (cast
    afterwards to compare at other precisions).
    """
    blocks = list(_block_list(model))
    skip = {id(b) for b in blocks}
    _init_modules(model, _postorder(model, skip), shell_seed(seed))
    for i, block in enumerate(blocks):
        _init_modules(model, _postorder(block, set()), block_seed(seed, i))
    return model


# ------------------------------------------------------------------------------------- the probe
class _StopStream(Exception):
    """Raised after the last requested block to end the model's forward early."""


def _attention_recorder(model: nn.Module) -> tuple[tuple[type, ...], int, str | None]:
    """(attention classes, output index of the probabilities, required module-name part) from the model's
    own output-capture table; the fallback is any module with an ``is_causal`` flag, probabilities at index 1."""
    spec = getattr(type(model), "_can_record_outputs", None) or {}
    rec = spec.get("attentions")
    if rec is None:
        return (), 1, None
    target = getattr(rec, "target_class", rec)
    index = getattr(rec, "index", 1) if not isinstance(rec, type) else 1
    layer_name = getattr(rec, "layer_name", None)
    return ((target,) if isinstance(target, type) else ()), int(index), layer_name


class _Probe:
    """Per-run state: selections, the statistics collected so far, the device and dtype of the blocks."""

    def __init__(self, model: nn.Module, n_layers: int, *, batch: int, seq_len: int, last_k: int | None,
                 device: torch.device, dtype: torch.dtype, max_layers: int | None) -> None:
        self.model, self.device, self.dtype, self.max_layers = model, device, dtype, max_layers
        self.token_mask = torch.ones(batch, seq_len, dtype=torch.bool, device=device)
        self.sels: dict[str, torch.Tensor] = {"": self.token_mask}
        if last_k is not None:
            last = torch.zeros_like(self.token_mask)
            last[:, -min(last_k, seq_len):] = True
            self.sels["_last"] = last
        self.rows: list[dict[str, Any]] = [{"layer": i} for i in range(n_layers + 1)]
        self.classes, self.index, self.layer_name = _attention_recorder(model)
        self.seed = 0
        self.progress: Callable[[str], None] | None = None
        self.extra: Callable[[torch.Tensor, torch.Tensor, bool], dict[str, float]] | None = None

    def record_state(self, layer: int, x: torch.Tensor) -> None:
        for suffix, sel in self.sels.items():
            self.rows[layer].update({k + suffix: v for k, v in token_stats(x, sel).items()})

    def record_attention(self, layer: int, A: torch.Tensor, causal: bool, mask: Any = None) -> None:
        allowed = keys_allowed(mask, A.shape[-1])  # the block's own mask: a sliding window counts in ln n_t
        for suffix, sel in self.sels.items():
            stats = attention_stats(A, sel, self.token_mask, causal=causal, allowed=allowed)
            self.rows[layer].update({k + suffix: v for k, v in stats.items()})

    def attention_modules(self, block: nn.Module) -> list[nn.Module]:
        found = []
        for name, m in block.named_modules():
            if self.classes:
                hit = isinstance(m, self.classes)
                if hit and self.layer_name:
                    hit = "." + self.layer_name.strip(".") + "." in "." + name + "."
            else:
                hit = isinstance(getattr(m, "is_causal", None), bool) and "cross" not in name.lower()
            if hit:
                found.append(m)
        return found


class _StreamedBlock(nn.Module):
    """Stand-in for block ``index``: materialise, initialise, run with probes, free."""

    def __init__(self, block: nn.Module, index: int, probe: _Probe) -> None:
        super().__init__()
        object.__setattr__(self, "_block", block)  # hidden from .modules(): stays on meta with the shell
        object.__setattr__(self, "_probe", probe)
        self.index = index

    def __getattr__(self, name: str) -> Any:  # attributes the model's forward reads (e.g. attention_type)
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(object.__getattribute__(self, "_block"), name)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        probe, block, i = self._probe, self._block, self.index
        if probe.max_layers is not None and i >= probe.max_layers:
            raise _StopStream
        x_in = args[0] if args else kwargs["hidden_states"]
        if i == 0:
            probe.record_state(0, x_in)
        causal = hf_is_causal(probe.model, block)
        block.to_empty(device="cpu")
        _init_modules(probe.model, _postorder(block, set()), block_seed(probe.seed, i))
        block.to(device=probe.device)
        _cast_parameters(block, probe.dtype)
        got: list[torch.Tensor] = []

        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            A = output[probe.index] if isinstance(output, (tuple, list)) else output
            if A is None:
                raise ValueError(f"{type(module).__name__} returned no attention probabilities")
            got.append(A)

        handles = [m.register_forward_hook(hook) for m in probe.attention_modules(block)]
        try:
            out = block(*args, **kwargs)
        finally:
            for h in handles:
                h.remove()
        if len(got) != 1:
            raise ValueError(f"block {i + 1} of {type(probe.model).__name__}: expected one self-attention "
                             f"probability tensor, got {len(got)}")
        probe.record_attention(i + 1, got[0], causal, kwargs.get("attention_mask"))
        if probe.extra is not None:
            probe.rows[i + 1].update({k: float(v) for k, v in probe.extra(got[0], x_in, causal).items()})
        probe.record_state(i + 1, out[0] if isinstance(out, (tuple, list)) else out)
        block.to_empty(device="meta")
        if probe.progress is not None:
            probe.progress(f"seed {probe.seed} block {i + 1}")
        return out


def _cast_parameters(module: nn.Module, dtype: torch.dtype) -> None:
    """Cast floating parameters only: buffers such as rotary frequencies stay float32, as in ``transformers``."""
    for p in module.parameters():
        if p.is_floating_point() and p.dtype != dtype:
            p.data = p.data.to(dtype)


# ------------------------------------------------------------------------------------------ build
def _meta_model(config: Any) -> nn.Module:
    """The model class of ``config`` built on the meta device, eager attention, eval mode."""
    import transformers

    config = copy.deepcopy(config)  # building sets fields on the config (attention implementation, ...)
    model_type = getattr(config, "model_type", None)
    if getattr(config, "is_encoder_decoder", False):
        if model_type not in _ENCODER_ONLY:
            raise ValueError(f"stream_measure streams self-attention stacks; the encoder-decoder {model_type!r} "
                             f"is supported only for {sorted(_ENCODER_ONLY)} (their encoder)")
        cls = getattr(transformers, _ENCODER_ONLY[model_type])
        with torch.device("meta"):
            model = cls._from_config(config, attn_implementation="eager")
    else:
        with torch.device("meta"):
            model = transformers.AutoModel.from_config(config, attn_implementation="eager")
    return model.eval()


def _materialise_shell(model: Any, probe: _Probe) -> list[_StreamedBlock]:
    layers = _block_list(model)
    stand_ins = [_StreamedBlock(b, i, probe) for i, b in enumerate(layers)]
    for i, s in enumerate(stand_ins):
        layers[i] = s
    model.to_empty(device="cpu")
    if hasattr(model, "tie_weights"):  # to_empty unties shared tensors (T5's encoder embedding is ``shared``)
        model.tie_weights()
    return stand_ins


def _forward_kwargs(model: nn.Module, input_ids: torch.Tensor) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"input_ids": input_ids, "output_attentions": True}
    if "use_cache" in inspect.signature(model.forward).parameters:
        kwargs["use_cache"] = False  # no key/value cache: it would hold every layer's keys
    return kwargs


def peak_rss_mb() -> float:
    """Peak resident memory of this process's own address space, in MiB.

    Linux: ``VmHWM`` of ``/proc/self/status``. Not ``getrusage``'s ``ru_maxrss``: Linux carries that over
    ``execve`` from the process that spawned this one, so a fresh interpreter started by a large parent (a
    test runner holding models) reports the *parent's* peak (a 1.5 GB parent → 1.5 GB for a 10 MB child).
    Elsewhere ``ru_maxrss`` (bytes on macOS, KiB on Linux); NaN where neither exists.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return math.nan
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def _progress_fn(progress: Any) -> Callable[[str], None] | None:
    if progress is None:
        return None
    if hasattr(progress, "advance"):
        return progress.advance
    if callable(progress):
        return progress
    raise ValueError(f"progress must be None, an object with advance(status) or a callable; got {progress!r}")


def _check_args(seq_len: int, seeds: int, batch: int, last_k: int | None, max_layers: int | None,
                device: Any, dtype: Any) -> torch.device:
    for name, value, low in (("seq_len", seq_len, 2), ("seeds", seeds, 1), ("batch", batch, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an integer ≥ {low}; got {value!r}")
    for name, opt in (("last_k", last_k), ("max_layers", max_layers)):
        if opt is not None and (not isinstance(opt, int) or isinstance(opt, bool) or opt < 1):
            raise ValueError(f"{name} must be None or an integer ≥ 1; got {opt!r}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating torch.dtype (torch.float32, torch.bfloat16, ...); got {dtype!r}")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N'; got {device!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was requested but torch sees no CUDA device")
    return dev


def _resolve_config(config: Any) -> Any:
    if isinstance(config, str):
        from sigprop.diagnose.checkpoints import config as checkpoint_config

        return checkpoint_config(config)
    if not hasattr(config, "model_type") or not hasattr(config, "to_dict"):
        raise ValueError(f"config must be a transformers PretrainedConfig or a checkpoint name; got {type(config).__name__}")
    return config


def _aggregate(per_seed: list[list[dict[str, Any]]]) -> dict[str, list[float]]:
    """Column-wise mean over seeds, NaN-aware (the attention columns of layer 0 are NaN)."""
    keys = [k for k in per_seed[0][0] if k != "layer"] + [k for k in per_seed[0][-1] if k not in per_seed[0][0]]
    out: dict[str, list[float]] = {"layer": [row["layer"] for row in per_seed[0]]}
    for k in keys:
        vals = torch.tensor([[row.get(k, math.nan) for row in rows] for rows in per_seed], dtype=torch.float64)
        out[k] = vals.nanmean(0).tolist()
    return out


def stream_measure(config: Any, *, seq_len: int, seeds: int = 1, batch: int = 1, device: Any = "cpu",
                   dtype: torch.dtype = torch.float32, last_k: int | None = None, seed0: int = 0,
                   input_ids: torch.Tensor | None = None, max_layers: int | None = None,
                   progress: Any = None,
                   extra: Callable[[torch.Tensor, torch.Tensor, bool], dict[str, float]] | None = None
                   ) -> dict[str, Any]:
    """Per-layer probe statistics of the HuggingFace model ``config`` describes, one block in memory at a time.

    Parameters
    ----------
    config : a ``transformers`` config (``model_type`` llama, mistral, gpt2, gpt_neox, bert, roberta, opt,
        distilbert, modernbert; t5 streams its encoder) or a checkpoint name of
        :mod:`sigprop.diagnose.checkpoints`.
    seq_len : T, tokens per sequence (≥ 2); ``batch`` sequences per seed.
    seeds : independent initialisations; run ``s`` uses seed ``seed0 + s`` for the weights
        (:func:`shell_seed`, :func:`block_seed`) and the random token ids (:func:`random_input_ids`).
    device, dtype : where and in which floating type the blocks run (``"cuda"`` honoured). Weights are always
        drawn on the CPU in float32 and then moved and cast, so they do not depend on the device.
    last_k : also report every statistic over the last k tokens only, as ``<key>_last`` (decoders).
    input_ids : ``(batch, seq_len)`` ids used for every seed instead of random ones.
    max_layers : stop after this many blocks (time a few blocks of a large model and extrapolate).
    progress : ``None``, a ``sigprop.progress`` bar (its ``advance(status)`` is called per block) or a
        callable taking that status string.
    extra : ``extra(A, x_in, causal) -> {name: float}`` for more per-block statistics, called with block ℓ's
        attention probabilities ``A`` ``(B, H, T, T)`` and the hidden state ``x_in`` entering it (e.g. the
        within-row variance of ln A); its columns are added (NaN at layer 0) and averaged like the others.

    Returns
    -------
    dict with ``"layer"`` (0 … L) and one list per statistic of :data:`STAT_KEYS` (mean over seeds; layer 0
    is the input of block 1, layer ℓ the output and attention of block ℓ), ``"per_seed"`` (the same columns
    per seed) and ``"meta"`` (settings, ``causal``, ``n_blocks``, ``wall_s``, ``peak_rss_mb`` — the process's
    peak resident memory, :func:`peak_rss_mb` — and on CUDA ``peak_cuda_mb``).
    """
    dev = _check_args(seq_len, seeds, batch, last_k, max_layers, device, dtype)
    config = _resolve_config(config)
    if input_ids is None:
        random_input_ids(config, seq_len=2, batch=1)  # fails early, before building, for non-text configs
    elif tuple(input_ids.shape) != (batch, seq_len):
        raise ValueError(f"input_ids must have shape (batch, seq_len) = ({batch}, {seq_len}); got {tuple(input_ids.shape)}")
    t0 = time.perf_counter()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    per_seed, causal, n_blocks = [], False, 0
    for s in range(seeds):
        seed = seed0 + s
        model = _meta_model(config)
        n_blocks = len(_block_list(model))
        causal = hf_is_causal(model)
        probe = _Probe(model, n_blocks, batch=batch, seq_len=seq_len, last_k=last_k, device=dev, dtype=dtype,
                       max_layers=max_layers)
        probe.seed, probe.progress, probe.extra = seed, _progress_fn(progress), extra
        _materialise_shell(model, probe)
        _init_modules(model, _postorder(model, set()), shell_seed(seed))
        model.to(device=dev)
        _cast_parameters(model, dtype)
        ids = input_ids if input_ids is not None else random_input_ids(config, seq_len=seq_len, batch=batch, seed=seed)
        with torch.no_grad():
            try:
                model(**_forward_kwargs(model, ids.to(dev)))
            except _StopStream:
                pass
        kept = n_blocks if max_layers is None else min(max_layers, n_blocks)
        per_seed.append(probe.rows[: kept + 1])
        del model, probe
    out: dict[str, Any] = _aggregate(per_seed)
    out["per_seed"] = [{k: [row.get(k, math.nan) for row in rows] for k in out} for rows in per_seed]
    meta = {"model_type": config.model_type, "seq_len": seq_len, "batch": batch, "seeds": seeds, "seed0": seed0,
            "last_k": last_k, "causal": causal, "n_blocks": n_blocks, "measured_blocks": len(out["layer"]) - 1,
            "device": str(dev), "dtype": str(dtype).replace("torch.", ""),
            "wall_s": time.perf_counter() - t0, "peak_rss_mb": peak_rss_mb()}
    if dev.type == "cuda":
        meta["peak_cuda_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
    out["meta"] = meta
    return out
