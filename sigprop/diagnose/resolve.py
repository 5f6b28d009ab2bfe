"""Turn a diagnose TARGET into a config (and a model when one was given or saved with weights).

TARGET: a ``torch.nn.Module``; a ``transformers`` config object; a local folder (``save_pretrained``
output: with weights the saved model is diagnosed, otherwise its config) or ``config.json``; a well-known
checkpoint name from :mod:`sigprop.diagnose.checkpoints`; or a ``model_type`` (``AutoConfig.for_model``).
The hub is never contacted.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Target", "full_config", "parse_overrides", "resolve"]

_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json")
_DEPTH_KEYS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers")


@dataclass
class Target:
    """A resolved target: ``config`` (``transformers`` config or ``None`` for a plain module), ``model``
    (a built model or ``None``), ``name`` (for reports) and ``source`` (how it was found)."""

    config: Any
    model: Any
    name: str
    source: str


def parse_overrides(items: list[str] | tuple[str, ...] | None) -> dict[str, Any]:
    """``["num_hidden_layers=48", "hidden_act=relu"]`` → dict; values parsed as JSON when they parse."""
    out: dict[str, Any] = {}
    for item in items or ():
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise ValueError(f"--set needs key=value; got {item!r}")
        key, raw = (s.strip() for s in item.split("=", 1))
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = {"true": True, "false": False, "none": None}.get(raw.lower(), raw)
    return out


def _apply(config: Any, overrides: dict[str, Any], depth: int | None) -> Any:
    for k, v in overrides.items():
        setattr(config, k, v)
    if depth is not None:
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth must be an integer ≥ 1; got {depth!r}")
        keys = [k for k in _DEPTH_KEYS if hasattr(config, k)]
        if not keys:
            raise ValueError(f"{type(config).__name__} has no layer-count field to set depth on")
        setattr(config, keys[0], depth)
        if hasattr(config, "num_decoder_layers"):
            config.num_decoder_layers = depth
        types = getattr(config, "layer_types", None)
        if isinstance(types, list) and len(types) != depth and types:  # ModernBERT: extend the pattern
            every = getattr(config, "global_attn_every_n_layers", None)
            if every:
                config.layer_types = ["full_attention" if i % every == 0 else "sliding_attention" for i in range(depth)]
            else:
                config.layer_types = [types[i % len(types)] for i in range(depth)]
    return config


def _from_path(p: Path, overrides: dict[str, Any], depth: int | None) -> Target:
    from transformers import AutoConfig

    if p.is_file():
        if p.suffix != ".json":
            raise ValueError(f"target {str(p)!r} is a file but not a config.json")
        folder = p.parent
    else:
        folder = p
    cfg_file = p if p.is_file() else folder / "config.json"
    if not os.access(cfg_file, os.R_OK):
        raise ValueError(f"target {str(p)!r}: no readable config.json there")
    try:
        config = AutoConfig.from_pretrained(str(cfg_file if p.is_file() else folder), local_files_only=True)
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        raise ValueError(f"target {str(p)!r}: cannot read its config ({str(exc).splitlines()[0][:160]})") from None
    has_weights = p.is_dir() and any((folder / w).exists() for w in _WEIGHTS)
    if has_weights and not overrides and depth is None:
        import transformers

        cls = transformers.T5EncoderModel if getattr(config, "model_type", None) == "t5" else transformers.AutoModel
        model = cls.from_pretrained(str(folder), local_files_only=True)
        return Target(config, model.eval(), str(p), "folder with weights")
    return Target(_apply(config, overrides, depth), None, str(p), "config file")


def full_config(config: Any) -> Any:
    """The ``transformers`` config behind a :class:`~sigprop.diagnose.light.LightConfig` (built offline from
    its recipe, depth applied); any other config is returned as it is."""
    from sigprop.diagnose.light import LightConfig

    if not isinstance(config, LightConfig):
        return config
    from transformers import AutoConfig

    model_type, fields, depth = config.recipe
    return _apply(AutoConfig.for_model(model_type, **fields), {}, depth)


def _light(model_type: str, fields: dict[str, Any], depth: int | None) -> Any:
    """A :class:`~sigprop.diagnose.light.LightConfig` for ``AutoConfig.for_model(model_type, **fields)`` with
    ``depth`` applied, or ``None`` when the light view would not be exact (then ``transformers`` is used)."""
    from sigprop.diagnose import checkpoints
    from sigprop.diagnose.light import light_config

    cfg = light_config(model_type, fields, checkpoints.published_fields(model_type), depth)
    return None if cfg is None else _apply(cfg, {}, depth)


def resolve(target: Any, overrides: dict[str, Any] | None = None, depth: int | None = None, *,
            light: bool = False) -> Target:
    """Resolve ``target`` (see module docstring); bad targets raise ``ValueError`` with one line.

    ``light``: for a checkpoint name or a ``model_type`` of a built-in family, return a
    :class:`~sigprop.diagnose.light.LightConfig` (no ``transformers``, no ``torch``) where it is exact —
    enough for a theory-only diagnosis; :func:`full_config` gives the real config when one is needed.
    """
    overrides = dict(overrides or {})
    torch = sys.modules.get("torch")  # a torch module exists only if torch was imported: no import needed here
    if torch is not None and isinstance(target, torch.nn.Module):
        if overrides or depth is not None:
            raise ValueError("overrides and depth apply to configs, not to a built model")
        cfg = getattr(target, "config", None)
        return Target(cfg, target, type(target).__name__, "module")
    # a transformers config exists only if transformers was imported: importing it here would cost seconds
    hf = sys.modules.get("transformers")
    PretrainedConfig = getattr(hf, "PretrainedConfig", None) if hf is not None else None
    if PretrainedConfig is not None and isinstance(target, PretrainedConfig):
        import copy

        return Target(_apply(copy.deepcopy(target), overrides, depth), None, getattr(target, "model_type", "config"), "config")
    if isinstance(target, os.PathLike) or (isinstance(target, str) and (os.path.exists(target) or target.endswith(".json")
                                                                        or target.startswith((".", "/", "~")))):
        p = Path(os.path.expanduser(str(target)))
        if not p.exists():
            raise ValueError(f"target {str(p)!r} does not exist")
        return _from_path(p, overrides, depth)
    if not isinstance(target, str) or not target.strip():
        raise ValueError(f"target must be a checkpoint name, model_type, folder, config or torch.nn.Module; got {target!r}")
    from sigprop.diagnose import checkpoints

    try:
        model_type, fields = checkpoints.lookup(target)
    except ValueError as exc:
        lookup_error = str(exc)
    else:
        fields.update(overrides)
        cfg = _light(model_type, fields, depth) if light else None
        if cfg is not None:
            return Target(cfg, None, target, "checkpoint table")
        from transformers import AutoConfig

        return Target(_apply(AutoConfig.for_model(model_type, **fields), {}, depth), None, target, "checkpoint table")
    cfg = _light(target, overrides, depth) if light else None
    if cfg is not None:
        return Target(cfg, None, target, "model_type")
    from transformers import AutoConfig

    try:
        config = AutoConfig.for_model(target, **overrides)
    except ValueError:
        raise ValueError(f"{lookup_error}; it is not a transformers model_type or a local folder either") from None
    return Target(_apply(config, {}, depth), None, target, "model_type")
