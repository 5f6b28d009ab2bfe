"""A collapse monitor: per-layer attention entropy and token cosine during training, with warnings.

:class:`CollapseMonitor` is a ``transformers.TrainerCallback`` (a plain object with the same methods when
transformers is missing), so it can be attached to a HuggingFace ``Trainer``::

    monitor = CollapseMonitor(probe_batch={"input_ids": ids, "attention_mask": mask}, every=100)
    trainer = Trainer(model=model, args=args, ..., callbacks=[monitor])

and sigprop's own trainer (:mod:`sigprop.training.loop`) calls it the same way. Every ``every`` optimiser steps
(``on_step_end``) and at every evaluation (``on_evaluate``) it runs :func:`sigprop.measure.measure` on the
fixed ``probe_batch`` (model in eval mode, no gradient, mode restored) and records, per layer ℓ = 1..L:

* ``attn_entropy_norm``: mean attention-row entropy / ln n_t (1 = uniform, 0 = one key per row);
* ``cosine``: mean pairwise cosine similarity of the tokens after block ℓ.

Thresholds (documented defaults, all adjustable):

* **rank collapse** — the output tokens of the last block are nearly parallel:
  ``cosine[L] ≥ rank_threshold`` (default **0.9**; the theory's label uses ρ_L ≥ 0.99 at initialisation,
  a trained model that sits at 0.9 has already lost most of its token diversity);
* **entropy collapse** — some layer's attention has condensed onto ~one key per row:
  ``min_ℓ attn_entropy_norm[ℓ] ≤ entropy_threshold`` (default **0.1**: e^{0.1 ln T} = T^{0.1} keys,
  ≈1.5 keys at T = 64, ≈1.9 at T = 512; uniform attention has 1).

When a condition *sets in* (false at the previous check) a :class:`CollapseWarning` is issued with
``warnings.warn`` (or, with ``warn=False``, logged to ``sigprop.monitor``); it is issued again only after the condition has cleared. ``history`` keeps
every check as a dict (``step``, ``attn_entropy_norm`` and ``cosine`` lists, ``rank_collapse``,
``entropy_collapse``); ``last`` is the latest one.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping
from typing import Any

import torch

try:  # HF-compatible base class when transformers is installed
    from transformers import TrainerCallback as _Base
except Exception:  # pragma: no cover - transformers is optional

    class _Base:  # type: ignore[no-redef]
        """Stand-in with TrainerCallback's method names."""

        def on_step_end(self, args, state, control, **kwargs):
            return control

        def on_evaluate(self, args, state, control, **kwargs):
            return control


__all__ = ["CollapseMonitor", "CollapseWarning", "RANK_THRESHOLD", "ENTROPY_THRESHOLD", "probe"]

log = logging.getLogger("sigprop.monitor")

RANK_THRESHOLD = 0.9
ENTROPY_THRESHOLD = 0.1


class CollapseWarning(UserWarning):
    """Rank or entropy collapse has set in during training."""


def _nan_to_none(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


@torch.no_grad()
def probe(model: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> dict[str, list[float | None]]:
    """Per-layer (ℓ = 1..L) ``attn_entropy_norm`` and ``cosine`` of ``model`` on ``batch`` (eval mode).

    ``batch`` holds ``input_ids`` and optionally ``attention_mask``; tensors are moved to the model's
    device. NaN values (e.g. a model with NaN weights) become ``None``.
    """
    from sigprop.measure import measure

    was_training = model.training
    device = next(model.parameters()).device
    kw: dict[str, Any] = {k: v.to(device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}
    model.eval()
    try:
        m = measure(model, **kw)
    finally:
        model.train(was_training)
    return {
        "attn_entropy_norm": [_nan_to_none(v) for v in m["attn_entropy_norm"][1:]],
        "cosine": [_nan_to_none(v) for v in m["cosine"][1:]],
    }


class CollapseMonitor(_Base):
    """Watches attention entropy and token cosine per layer; warns when rank or entropy collapse sets in.

    Parameters
    ----------
    probe_batch : the fixed batch to probe (``{"input_ids": (B, T), "attention_mask": (B, T)}`` or just an
        ids tensor). Keep it small (a few sequences).
    every : probe every this many optimiser steps in ``on_step_end`` (0: only at ``on_evaluate``).
    rank_threshold, entropy_threshold : see the module docstring.
    warn : issue :class:`CollapseWarning` (else only log and record).
    """

    def __init__(
        self,
        probe_batch: Mapping[str, torch.Tensor] | torch.Tensor,
        *,
        every: int = 100,
        rank_threshold: float = RANK_THRESHOLD,
        entropy_threshold: float = ENTROPY_THRESHOLD,
        warn: bool = True,
    ) -> None:
        if isinstance(probe_batch, torch.Tensor):
            probe_batch = {"input_ids": probe_batch}
        if "input_ids" not in probe_batch:
            raise ValueError("probe_batch needs 'input_ids'")
        if not 0 < rank_threshold <= 1:
            raise ValueError(f"rank_threshold must be in (0, 1]; got {rank_threshold}")
        if not 0 <= entropy_threshold < 1:
            raise ValueError(f"entropy_threshold must be in [0, 1); got {entropy_threshold}")
        if every < 0:
            raise ValueError(f"every must be ≥ 0; got {every}")
        self.probe_batch = dict(probe_batch)
        self.every = int(every)
        self.rank_threshold = float(rank_threshold)
        self.entropy_threshold = float(entropy_threshold)
        self.warn = warn
        self.history: list[dict[str, Any]] = []
        self._active = {"rank_collapse": False, "entropy_collapse": False}

    # ------------------------------------------------------------------ core
    @property
    def last(self) -> dict[str, Any] | None:
        return self.history[-1] if self.history else None

    def classify(self, stats: Mapping[str, list[float | None]]) -> dict[str, bool]:
        """``{"rank_collapse": bool, "entropy_collapse": bool}`` for probe ``stats`` (None values ignored)."""
        cos = [c for c in stats["cosine"] if c is not None]
        ent = [e for e in stats["attn_entropy_norm"] if e is not None]
        return {
            "rank_collapse": bool(cos) and cos[-1] >= self.rank_threshold,
            "entropy_collapse": bool(ent) and min(ent) <= self.entropy_threshold,
        }

    def check(self, model: torch.nn.Module, step: int) -> dict[str, Any]:
        """Probe ``model`` now, record the result, warn on onset; returns the record."""
        stats = probe(model, self.probe_batch)
        flags = self.classify(stats)
        rec = {"step": int(step), **stats, **flags}
        self.history.append(rec)
        for kind, on in flags.items():
            if on and not self._active[kind]:
                self._emit(kind, rec)
            self._active[kind] = on
        return rec

    def _emit(self, kind: str, rec: dict[str, Any]) -> None:
        if kind == "rank_collapse":
            msg = (
                f"rank collapse at step {rec['step']}: last-layer token cosine {rec['cosine'][-1]:.3f} "
                f"≥ {self.rank_threshold:g} (tokens nearly identical)"
            )
        else:
            ents = rec["attn_entropy_norm"]
            i = min((e, i) for i, e in enumerate(ents) if e is not None)[1]
            msg = (
                f"entropy collapse at step {rec['step']}: layer {i + 1} attention entropy/ln T {ents[i]:.3f} "
                f"≤ {self.entropy_threshold:g} (attention on ~one key per row)"
            )
        if self.warn:  # one message: a warning, or (warn=False) a log record — never both on stderr
            warnings.warn(msg, CollapseWarning, stacklevel=3)
        else:
            log.warning(msg)

    # ------------------------------------------------------------------ TrainerCallback interface
    def on_step_end(self, args: Any, state: Any, control: Any, model: torch.nn.Module | None = None, **kwargs: Any):
        step = int(getattr(state, "global_step", 0))
        if model is not None and self.every and step % self.every == 0:
            self.check(model, step)
        return control

    def on_evaluate(self, args: Any, state: Any, control: Any, model: torch.nn.Module | None = None, **kwargs: Any):
        step = int(getattr(state, "global_step", 0))
        if model is not None and not (self.history and self.history[-1]["step"] == step):
            self.check(model, step)
        return control

    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history), "active": dict(self._active)}

    def load_state_dict(self, sd: Mapping[str, Any]) -> None:
        self.history = list(sd.get("history", []))
        self._active = dict(sd.get("active", self._active))
