"""Settings of one training run (:class:`TrainConfig`) and what it returns (:class:`TrainResult`).

Each field of :class:`TrainConfig` declares its role once, in its metadata, and the lists the trainer and
the job runner need are derived from that:

* :data:`RESUME_KEYS` — fields that must agree between a checkpoint and the run that resumes it;
* :data:`RUNTIME_KEYS` — fields that change where or how fast a run goes, never its result (left out of
  the fingerprint that keys finished sweep points and figure runs).

No torch here: importing the configuration is cheap.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ESCAPE_MARGIN", "EVAL_SEED", "CHECKPOINT", "METRICS", "SUMMARY", "LOSS_PNG", "RESUME_KEYS",
           "RUNTIME_KEYS", "TrainConfig", "TrainResult"]

#: a run has "escaped" the unigram plateau at the first evaluation with test loss ≤ unigram − this (nats)
ESCAPE_MARGIN = 0.3
#: seed of the fixed masking of the evaluation rows (independent of the run seed)
EVAL_SEED = 1234
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
LOSS_PNG = "loss.png"


def _setting(default: Any, *, resume: bool = True, runtime: bool = False) -> Any:
    """A configuration field. ``resume=False``: may differ when resuming from a checkpoint;
    ``runtime=True``: does not change the result (implies ``resume=False``)."""
    return field(default=default, metadata={"resume": resume and not runtime, "runtime": runtime})


@dataclass
class TrainConfig:
    """Settings of one training run (defaults: the authors' recipe, docs/theory.md §8)."""

    corpus: str = _setting("synthetic")
    steps: int = _setting(1000)
    batch_size: int = _setting(64)
    seq_len: int = _setting(64)
    lr: float = _setting(5e-4)
    warmup: float = _setting(0.05)
    weight_decay: float = _setting(0.01)
    grad_clip: float | None = _setting(1.0)
    seed: int = _setting(0)
    vocab_size: int = _setting(2000)
    mlm_probability: float = _setting(0.15)
    objective: str | None = _setting(None)
    dropout: float = _setting(0.0)
    emb_std: float = _setting(0.1)
    pos_std: float = _setting(0.1)
    freeze_uniform_attention: bool = _setting(False)
    eval_every: int | None = _setting(None)
    eval_rows: int = _setting(256)
    probe_rows: int = _setting(8)
    checkpoint_every: int | None = _setting(None, resume=False)
    diverge_loss: float | None = _setting(None, resume=False)
    device: str = _setting("cpu", runtime=True)
    threads: int | None = _setting(2, runtime=True)
    n_stories: int | None = _setting(None)
    cache_dir: str | None = _setting(None, runtime=True)
    stop_after: int | None = _setting(None, runtime=True)
    rank_threshold: float = _setting(0.9, resume=False)
    entropy_threshold: float = _setting(0.1, resume=False)

    def __post_init__(self) -> None:
        for ok, msg in self._checks():
            if not ok:
                raise ValueError(msg)

    def _checks(self) -> list[tuple[bool, str]]:
        return [
            (isinstance(self.steps, int) and self.steps >= 1, f"steps must be an integer ≥ 1; got {self.steps!r}"),
            (self.batch_size >= 1, f"batch_size must be ≥ 1; got {self.batch_size}"),
            (self.seq_len >= 2, f"seq_len must be ≥ 2; got {self.seq_len}"),
            (math.isfinite(self.lr) and self.lr > 0, f"lr must be finite and > 0; got {self.lr}"),
            (0 <= self.warmup < 1, f"warmup must be a fraction in [0, 1); got {self.warmup}"),
            (self.weight_decay >= 0, f"weight_decay must be ≥ 0; got {self.weight_decay}"),
            (self.grad_clip is None or self.grad_clip > 0, f"grad_clip must be > 0 or None; got {self.grad_clip}"),
            (0 < self.mlm_probability <= 1, f"mlm_probability must be in (0, 1]; got {self.mlm_probability}"),
            (0 <= self.dropout < 1, f"dropout must be in [0, 1); got {self.dropout}"),
            (self.objective in (None, "mlm", "clm"), f"objective must be 'mlm' or 'clm'; got {self.objective!r}"),
            (self.eval_every is None or self.eval_every >= 1, f"eval_every must be ≥ 1; got {self.eval_every}"),
            (self.checkpoint_every is None or self.checkpoint_every >= 1,
             f"checkpoint_every must be ≥ 1; got {self.checkpoint_every}"),
            (self.eval_rows >= 1 and self.probe_rows >= 1, "eval_rows and probe_rows must be ≥ 1"),
            (self.threads is None or self.threads >= 1, f"threads must be ≥ 1; got {self.threads}"),
            (self.stop_after is None or self.stop_after >= 1, f"stop_after must be ≥ 1; got {self.stop_after}"),
            (str(self.device).split(":")[0] in ("cpu", "cuda"), f"device must be 'cpu' or 'cuda'; got {self.device!r}"),
        ]

    @property
    def eval_interval(self) -> int:
        return self.eval_every or max(1, self.steps // 20)

    @property
    def checkpoint_interval(self) -> int:
        return self.checkpoint_every or max(self.eval_interval, self.steps // 10)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: configuration fields that must agree between a checkpoint and the run that resumes it
RESUME_KEYS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.metadata["resume"])
#: configuration fields that do not change a run's result (device, threads, caches, early stop)
RUNTIME_KEYS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.metadata["runtime"])


@dataclass
class TrainResult:
    """``summary`` (also ``summary.json``) and ``metrics`` (the records of ``metrics.jsonl``)."""

    summary: dict[str, Any]
    metrics: list[dict[str, Any]] = field(default_factory=list)

    def __getitem__(self, key: str) -> Any:
        return self.summary[key]
