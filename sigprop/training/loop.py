"""The training loop: :class:`Trainer` (one method per step of the loop) and :func:`train`.

``train(spec, TrainConfig(...), out="runs/x")`` builds :class:`~sigprop.nn.heads.LanguageModel` (masked-LM
head on the encoder twin, next-token head when ``spec.causal``), and trains it with the authors' recipe
(docs/theory.md §8, Fig 6: AdamW, lr 5e-4, batch 64, linear warmup over 5 % of the steps then linear decay to 0,
weight decay 0.01 on matrices only, gradient clipping at 1.0 as HF Trainer does).

What it guarantees:

* **Determinism** (CPU): the seed fixes the model (local generator), the data order (one permutation per
  epoch from ``seed`` and the epoch), the MLM masking (one generator per step from ``seed`` and the step)
  and dropout (global torch RNG, seeded, saved in checkpoints; the caller's RNG state is restored
  afterwards). Threads are set to ``threads`` (default 2) for the run and restored.
* **Evaluation** every ``eval_every`` steps (and at step 0 and the end): test loss on the first
  ``eval_rows`` rows of the test split with masking fixed once (generator seed :data:`EVAL_SEED`), and the
  collapse probes (attention entropy / ln T and token cosine per layer, :mod:`sigprop.monitor`) on the
  first ``probe_rows`` test rows, unmasked.
* **Checkpoints** ``checkpoint.pt`` at step 0, every ``checkpoint_every`` steps and at the end, written
  atomically (:mod:`sigprop.io`): model, optimiser, scheduler, RNG states, step, data position, running
  sums, the metrics so far. ``resume=True`` continues from it (the configuration must match, see
  :data:`~sigprop.training.config.RESUME_KEYS`) and ends with exactly the metrics of an uninterrupted run.
  ``metrics.jsonl`` is rewritten from the checkpoint on resume, so records logged after it by a killed run
  are dropped.
* **Divergence**: a non-finite loss or gradient norm, or a training loss above ``diverge_loss`` (default
  ``3 ln V``: far worse than the uniform predictor), stops the run *before* the bad update is applied;
  the summary says ``diverged: true`` with the reason, and ``checkpoint.pt`` keeps the last good state
  (checkpoints are never written from non-finite parameters).
* **Ctrl-C**: with ``handle_sigint`` (the CLI), the first Ctrl-C finishes the current step, checkpoints,
  writes the summary (status ``interrupted``) and raises ``KeyboardInterrupt``; a ``KeyboardInterrupt``
  raised by a callback is handled the same way.

Outputs in ``out``: ``metrics.jsonl`` (one JSON record per evaluation), ``summary.json`` (see
:meth:`Trainer.summary`), ``loss.png`` (test and training loss against step, with the unigram plateau) and
``checkpoint.pt``; every file gets the mode a plain write would give. :func:`summary_lines` renders a
summary as text.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from sigprop.data import clm_targets, mlm_collate, prepare
from sigprop.diagram import where
from sigprop.io import dumps, jsonable, write_atomic
from sigprop.monitor import CollapseMonitor
from sigprop.nn.heads import IGNORE_INDEX, LanguageModel, freeze_uniform_attention, lm_loss
from sigprop.nn.modules import TransformerStack
from sigprop.plot import pyplot, savefig_atomic
from sigprop.progress import bar as progress_bar
from sigprop.spec import Spec
from sigprop.training.config import (
    CHECKPOINT,
    ESCAPE_MARGIN,
    EVAL_SEED,
    LOSS_PNG,
    METRICS,
    RESUME_KEYS,
    SUMMARY,
    TrainConfig,
    TrainResult,
)

__all__ = ["Trainer", "train", "load_checkpoint", "summary_lines", "plot_losses", "lr_schedule", "step_generator"]


def load_checkpoint(path: str | os.PathLike[str], map_location: str = "cpu") -> dict[str, Any]:
    """Load a ``checkpoint.pt`` (a folder is accepted too) written by :func:`train`."""
    p = Path(path)
    if p.is_dir():
        p = p / CHECKPOINT
    return torch.load(p, map_location=map_location, weights_only=False)


def lr_schedule(total: int, warmup_frac: float):
    """Learning-rate factor per step: linear warmup over ``ceil(warmup_frac · total)`` steps, then linear
    decay to 0 at ``total``."""
    warm = int(math.ceil(warmup_frac * total))

    def f(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        return max(0.0, (total - step) / max(1, total - warm))

    return f


def step_generator(seed: int, step: int) -> torch.Generator:
    """The generator of one step's randomness (MLM masking), from the run seed and the step only."""
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + int(step) * 7_919 + 17) % (2**63 - 1))


class RowOrder:
    """Training-row order: a fresh permutation of the N rows per epoch, from (seed, epoch) only."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed = n, seed
        self._cache: dict[int, torch.Tensor] = {}

    def perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._cache:
            self._cache = {epoch: torch.randperm(self.n, generator=step_generator(self.seed + 1, -1 - epoch))}
        return self._cache[epoch]

    def rows(self, start: int, count: int) -> torch.Tensor:
        return torch.stack([self.perm(pos // self.n)[pos % self.n] for pos in range(start, start + count)])


class SigintFlag:
    """First Ctrl-C sets ``hit`` (the loop checkpoints at the next step boundary); the second one raises."""

    def __init__(self, enabled: bool) -> None:
        self.hit = False
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self._old: Any = None

    def __enter__(self) -> SigintFlag:
        if self.enabled:
            self._old = signal.getsignal(signal.SIGINT)

            def handler(signum, frame):
                self.hit = True
                signal.signal(signal.SIGINT, signal.default_int_handler)

            signal.signal(signal.SIGINT, handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            signal.signal(signal.SIGINT, self._old)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Set torch's CPU threads to ``n`` (if given) for the block, then restore them."""
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


class CallbackState:
    """What a HuggingFace callback sees as ``state`` (``global_step``, ``max_steps``, ``log_history``)."""

    def __init__(self, max_steps: int) -> None:
        self.global_step = 0
        self.max_steps = max_steps
        self.log_history: list[dict[str, Any]] = []


class Control:
    """Stand-in for ``transformers.TrainerControl``: callbacks may set ``should_training_stop``."""

    def __init__(self) -> None:
        self.should_training_stop = False
        self.should_evaluate = False
        self.should_save = False
        self.should_log = False


def _json_line(rec: dict[str, Any]) -> str:
    return json.dumps(jsonable(rec), allow_nan=False)


# ----------------------------------------------------------------------------------------- the trainer
class Trainer:
    """One training run of the twin of ``spec``; :meth:`run` is the loop (see the module docstring).

    The state of the run lives on the instance: ``step``, ``sums`` (running training-loss sum and count,
    last gradient norm), ``metrics``, ``status``/``reason``, and ``safe`` (at a step boundary, where the
    state may be checkpointed). Each step of the loop is one method: :meth:`initial_eval`,
    :meth:`train_step`, :meth:`after_step` (evaluation, callbacks, checkpoint, stop conditions), then
    :meth:`finish` (summary, loss figure).
    """

    def __init__(self, spec: Spec, config: TrainConfig, out: Path | None, data: Any, device: torch.device,
                 callbacks: Sequence[Any] = (), progress: bool = False, handle_sigint: bool = False) -> None:
        self.spec, self.config, self.out, self.data, self.device = spec, config, out, data, device
        self.callbacks, self.progress, self.handle_sigint = list(callbacks), progress, handle_sigint
        self.t0 = time.perf_counter()
        torch.manual_seed(config.seed)
        if device.type == "cuda":
            torch.cuda.manual_seed_all(config.seed)
        self.objective = config.objective or ("clm" if spec.causal else "mlm")
        self.model = self._build_model()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt, self.sched = self._build_optimiser()
        V = data.vocab_size
        self.diverge_loss = config.diverge_loss if config.diverge_loss is not None else 3.0 * math.log(V)
        self.unigram = float(data.unigram_loss if self.objective == "mlm" else data.unigram_loss_all)
        self.order = RowOrder(int(data.train.shape[0]), config.seed)
        eval_rows, gen = data.test[: config.eval_rows], torch.Generator().manual_seed(EVAL_SEED)
        self.eval_batches = [self.make_batch(eval_rows[i : i + config.batch_size], gen)
                             for i in range(0, eval_rows.shape[0], config.batch_size)]
        probe_ids, pad = data.test[: config.probe_rows], data.tokenizer.pad_token_id
        probe = {"input_ids": probe_ids,
                 "attention_mask": (probe_ids != pad).long() if pad is not None else torch.ones_like(probe_ids)}
        self.monitor = CollapseMonitor(probe, every=0, rank_threshold=config.rank_threshold,
                                       entropy_threshold=config.entropy_threshold)
        self.step, self.session_steps, self.last_loss = 0, 0, math.nan
        self.sums: dict[str, Any] = {"loss_sum": 0.0, "loss_n": 0, "grad_norm": None}
        self.metrics: list[dict[str, Any]] = []
        self.resumed_from: int | None = None
        self.state, self.control = CallbackState(config.steps), Control()
        self.status: str = "running"
        self.reason: str | None = None
        self.safe = True

    # -- construction
    def _build_model(self):
        c = self.config
        stack = TransformerStack(self.spec, vocab_size=self.data.vocab_size,
                                 max_position=max(self.spec.seq_len, c.seq_len), emb_std=c.emb_std,
                                 pos_std=c.pos_std, dropout=c.dropout, seed=c.seed)
        model = LanguageModel(stack, self.objective)
        if c.freeze_uniform_attention:
            freeze_uniform_attention(model)
            for block in model.stack.blocks:
                block.attn.q.weight.requires_grad_(False)
                block.attn.k.weight.requires_grad_(False)
        return model.to(self.device)

    def _build_optimiser(self):
        c = self.config
        decay = [p for p in self.params if p.ndim >= 2]
        no_decay = [p for p in self.params if p.ndim < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": c.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=c.lr)
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, lr_schedule(c.steps, c.warmup))

    # -- batches and evaluation
    def make_batch(self, rows: torch.Tensor, gen: torch.Generator) -> dict[str, torch.Tensor]:
        tok = self.data.tokenizer
        if self.objective == "mlm":
            b = mlm_collate(rows, tok, mlm_probability=self.config.mlm_probability, generator=gen)
        else:
            b = clm_targets(rows, pad_token_id=tok.pad_token_id)
        return {k: v.to(self.device) for k, v in b.items()}

    @torch.no_grad()
    def evaluate(self) -> float:
        """Test loss (nats per predicted token) on the fixed evaluation batches."""
        was = self.model.training
        self.model.eval()
        total, count = 0.0, 0
        for b in self.eval_batches:
            logits = self.model(input_ids=b["input_ids"], attention_mask=b["attention_mask"])["logits"]
            total += float(lm_loss(logits, b["labels"], self.objective, reduction="sum"))
            lab = b["labels"][:, 1:] if self.objective == "clm" else b["labels"]
            count += int((lab != IGNORE_INDEX).sum())
        self.model.train(was)
        return total / max(count, 1)

    def record_eval(self) -> dict[str, Any]:
        """Evaluate, probe, append the record to the metrics (and ``metrics.jsonl``), fire ``on_evaluate``."""
        test_loss = self.evaluate()
        mon = self.monitor.check(self.model, self.step)
        s = self.sums
        rec = {
            "step": self.step, "test_loss": test_loss,
            "train_loss": s["loss_sum"] / s["loss_n"] if s["loss_n"] else None,
            "lr": self.sched.get_last_lr()[0] if self.step else 0.0, "grad_norm": s["grad_norm"],
            "attention_entropy": mon["attn_entropy_norm"], "cosine": mon["cosine"],
            "rank_collapse": mon["rank_collapse"], "entropy_collapse": mon["entropy_collapse"],
            "escaped": test_loss <= self.unigram - ESCAPE_MARGIN,
        }
        s["loss_sum"], s["loss_n"] = 0.0, 0
        self.metrics.append(rec)
        self.state.log_history.append(rec)
        if self.out is not None:
            with open(self.out / METRICS, "a") as fh:
                fh.write(_json_line(rec) + "\n")
        self.fire("on_evaluate", metrics=rec)
        return rec

    def fire(self, event: str, **kw: Any) -> None:
        for cb in self.callbacks:
            fn = getattr(cb, event, None)
            if fn is not None:
                fn(self.config, self.state, self.control, model=self.model, **kw)

    # -- checkpoints
    def params_finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in self.model.parameters())

    def save_checkpoint(self) -> bool:
        """Write a checkpoint; False only when the parameters are non-finite (never saved).

        Without an output folder there is nothing to write, which is not a failure.
        """
        if not self.params_finite():
            return False
        if self.out is None:
            return True
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        blob = {
            "format": "sigprop-train-1", "step": self.step, "samples_seen": self.step * self.config.batch_size,
            "model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(), "rng": rng, "run": dict(self.sums), "metrics": list(self.metrics),
            "monitor": self.monitor.state_dict(), "config": self.config.to_dict(), "spec": self.spec.to_dict(),
            "data_fingerprint": self.data.fingerprint, "objective": self.objective, "vocab_size": self.data.vocab_size,
        }
        buf = io.BytesIO()
        torch.save(blob, buf)
        write_atomic(self.out / CHECKPOINT, buf.getvalue())
        return True

    def restore(self) -> None:
        """Continue from ``out/checkpoint.pt`` when there is one (its settings must match), and rewrite
        ``metrics.jsonl`` to exactly the checkpoint's records (empty for a fresh run)."""
        if self.out is None:
            return
        path = self.out / CHECKPOINT
        if path.exists():
            ck = load_checkpoint(path, map_location="cpu")
            cfg = self.config.to_dict()
            diffs = [k for k in RESUME_KEYS if ck["config"].get(k) != cfg.get(k)]
            if ck["spec"] != self.spec.to_dict():
                diffs.append("spec")
            if ck["data_fingerprint"] != self.data.fingerprint:
                diffs.append("corpus contents")
            if diffs:
                raise ValueError(f"cannot resume from {path}: {', '.join(diffs)} differ from the checkpoint; "
                                 "use the same settings or a new output folder")
            self.model.load_state_dict(ck["model"])
            self.opt.load_state_dict(ck["optimizer"])
            self.sched.load_state_dict(ck["scheduler"])
            torch.set_rng_state(ck["rng"]["torch"])
            if self.device.type == "cuda" and "cuda" in ck["rng"]:
                torch.cuda.set_rng_state(ck["rng"]["cuda"], self.device)
            self.step, self.sums, self.metrics = int(ck["step"]), dict(ck["run"]), list(ck["metrics"])
            self.monitor.load_state_dict(ck["monitor"])
            self.resumed_from = self.step
            self.state.global_step = self.step

    def reset_metrics_file(self) -> None:
        if self.out is not None:  # fresh run: empty file; resume: exactly the checkpoint's records
            write_atomic(self.out / METRICS, "".join(_json_line(r) + "\n" for r in self.metrics))

    # -- the loop
    def initial_eval(self) -> None:
        rec = self.record_eval()
        if not math.isfinite(rec["test_loss"]):
            self.status, self.reason = "diverged", "non-finite test loss at initialisation"
        self.save_checkpoint()

    def _diverged(self, reason: str) -> bool:
        self.status, self.reason, self.safe = "diverged", reason, True
        return False

    def train_step(self) -> bool:
        """One optimiser step. False (status ``diverged``) when the loss, the gradient norm or the updated
        parameters are non-finite, or the loss exceeds ``diverge_loss`` (the first two before updating)."""
        c = self.config
        self.safe = False
        rows = self.data.train[self.order.rows(self.step * c.batch_size, c.batch_size)]
        loss = self.model(**self.make_batch(rows, step_generator(c.seed, self.step)))["loss"]
        lv = float(loss.detach())
        if not math.isfinite(lv) or lv > self.diverge_loss:
            what = "non-finite" if not math.isfinite(lv) else f"{lv:.4g} > diverge_loss {self.diverge_loss:.4g}"
            return self._diverged(f"training loss {what} at step {self.step + 1}")
        loss.backward()
        gn = float(torch.nn.utils.clip_grad_norm_(self.params, c.grad_clip if c.grad_clip else math.inf))
        if not math.isfinite(gn):
            self.opt.zero_grad(set_to_none=True)
            return self._diverged(f"non-finite gradient norm at step {self.step + 1}")
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        self.step += 1
        self.session_steps += 1
        self.state.global_step = self.step
        if not self.params_finite():  # the update itself blew up: stop before evaluating or saving
            return self._diverged(f"non-finite parameters after step {self.step}")
        self.sums["loss_sum"] += lv
        self.sums["loss_n"] += 1
        self.sums["grad_norm"] = gn
        self.last_loss, self.safe = lv, True
        return True

    def after_step(self, sig: SigintFlag) -> bool:
        """Evaluation when due, ``on_step_end`` (after it, so an interrupt there checkpoints a complete
        step), the periodic checkpoint, Ctrl-C and the stop conditions. False ends the loop."""
        c = self.config
        if self.step % c.eval_interval == 0 or self.step == c.steps:
            if not math.isfinite(self.record_eval()["test_loss"]):
                self.status, self.reason = "diverged", f"non-finite test loss at step {self.step}"
                return False
        self.fire("on_step_end")
        if self.step % c.checkpoint_interval == 0 and self.step < c.steps and not self.save_checkpoint():
            self.status, self.reason = "diverged", f"non-finite parameters at step {self.step}"
            return False
        if sig.hit:
            raise KeyboardInterrupt
        if self.control.should_training_stop or (c.stop_after is not None and self.session_steps >= c.stop_after):
            self.status = "stopped"
            self.save_checkpoint()
            return False
        return True

    def run(self) -> TrainResult:
        """The loop; on ``KeyboardInterrupt`` checkpoint (at a step boundary), write the summary, re-raise."""
        bar = progress_bar(self.progress, "train", self.config.steps, self.step)
        try:
            with SigintFlag(self.handle_sigint) as sig, bar:
                self.fire("on_train_begin")
                if self.step == 0 and self.resumed_from is None:
                    self.initial_eval()
                self.model.train()
                while self.status == "running" and self.step < self.config.steps:
                    if not self.train_step():
                        break
                    bar.advance(f"loss {self.last_loss:.3f}")
                    if not self.after_step(sig):
                        break
                if self.status == "running":
                    self.status = "completed"
                    self.save_checkpoint()
                self.fire("on_train_end")
        except KeyboardInterrupt:
            if self.safe:
                self.save_checkpoint()
            self.finish("interrupted", "interrupted by the user"
                        + ("" if self.safe else " mid-step; kept the previous checkpoint"))
            raise
        return self.finish(self.status, self.reason)

    # -- results
    def finish(self, status: str, reason: str | None) -> TrainResult:
        """The summary (written to ``summary.json``) and the loss figure ``loss.png``."""
        summary = self.summary(status, reason)
        if self.out is not None:
            write_atomic(self.out / SUMMARY, dumps(summary) + "\n")
            plot_losses(self.metrics, summary["unigram_loss"], self.out / LOSS_PNG,
                        title=f"{status}: {summary['objective']} on {summary['corpus']}, {self.step} steps")
        return TrainResult(summary=summary, metrics=self.metrics)

    def summary(self, status: str, reason: str | None) -> dict[str, Any]:
        """``summary.json``: outcome, losses against the unigram plateau, the escape step, the collapse
        probes at the end, the theory's predicted regime, the vocabulary (and a note when it came out
        smaller than requested), the spec and the configuration."""
        finite = [r for r in self.metrics if r.get("test_loss") is not None and math.isfinite(r["test_loss"])]
        last = finite[-1] if finite else None
        try:
            regime, theory_error = where(self.spec), None
        except Exception as exc:  # noqa: BLE001 - the theory may not cover every spec the twin can train
            regime, theory_error = None, f"{type(exc).__name__}: {exc}"
        note = getattr(self.data, "vocab_note", None)
        out = {
            "status": status, "diverged": status == "diverged", "reason": reason,
            "steps_done": self.step, "steps": self.config.steps,
            "final_test_loss": last["test_loss"] if last else None,
            "initial_test_loss": finite[0]["test_loss"] if finite and finite[0]["step"] == 0 else None,
            "best_test_loss": min((r["test_loss"] for r in finite), default=None),
            "unigram_loss": self.unigram, "escape_margin": ESCAPE_MARGIN,
            "steps_to_escape": next((r["step"] for r in finite if r["test_loss"] <= self.unigram - ESCAPE_MARGIN), None),
            "predicted_regime": regime,
            "final_attention_entropy": last["attention_entropy"] if last else None,
            "final_cosine": last["cosine"] if last else None,
            "rank_collapse": bool(last and last["rank_collapse"]),
            "entropy_collapse": bool(last and last["entropy_collapse"]),
            "objective": self.objective, "corpus": self.data.corpus_name, "vocab_size": self.data.vocab_size,
            "requested_vocab_size": self.config.vocab_size, "notes": [note] if note else [],
            "n_params": sum(p.numel() for p in self.model.parameters()),
            "resumed_from_step": self.resumed_from, "wall_s": time.perf_counter() - self.t0,
            "spec": self.spec.to_dict(), "config": self.config.to_dict(),
        }
        if theory_error:
            out["theory_error"] = theory_error
        return out


def train(
    spec: Spec,
    config: TrainConfig | None = None,
    out: str | os.PathLike[str] | None = None,
    *,
    data: Any = None,
    resume: bool = False,
    callbacks: Sequence[Any] = (),
    progress: bool = False,
    handle_sigint: bool = False,
) -> TrainResult:
    """Train the twin of ``spec`` (see the module docstring). ``data``: a prepared
    :class:`~sigprop.data.DataBundle` (else ``prepare(config.corpus, ...)``; raises
    :class:`~sigprop.data.CorpusUnavailable` when there is none). ``callbacks``: objects with any of the
    ``TrainerCallback`` methods ``on_train_begin``, ``on_step_end``, ``on_evaluate``, ``on_train_end``,
    called as ``(args=config, state, control, model=model, metrics=...)``.
    """
    config = config or TrainConfig()
    if not isinstance(spec, Spec) or spec.is_grid:
        raise ValueError("train needs a scalar sigprop.Spec")
    device = torch.device(config.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={config.device!r} requested but torch.cuda.is_available() is False")
    if resume and out is None:
        raise ValueError("resume needs an output folder (out)")
    outdir = Path(out) if out is not None else None
    if data is None:
        data = prepare(config.corpus, seq_len=config.seq_len, vocab_size=config.vocab_size,
                       n_stories=config.n_stories, cache_dir=config.cache_dir)
    if data.seq_len != config.seq_len:
        raise ValueError(f"data rows have length {data.seq_len}, config.seq_len is {config.seq_len}")
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch_threads(config.threads):
        trainer = Trainer(spec, config, outdir, data, device, callbacks, progress, handle_sigint)
        if resume:
            trainer.restore()
        trainer.reset_metrics_file()
        return trainer.run()


# ----------------------------------------------------------------------------------------- reporting
def summary_lines(s: dict[str, Any], out: str | os.PathLike[str] | None = None) -> list[str]:
    """A training summary (:meth:`Trainer.summary`) as plain text lines, for the CLI and logs."""
    fmt = lambda v: "—" if v is None else f"{v:.4f}"  # noqa: E731
    plateau = f"the unigram plateau {s['unigram_loss']:.4f} − {s['escape_margin']:g}"
    if s["steps_to_escape"] is not None:
        escape = f"escaped below {plateau} at step {s['steps_to_escape']}"
    else:
        escape = f"did not escape below {plateau} within {s['steps_done']} steps"
    lines = [f"{s['status']} after {s['steps_done']}/{s['steps']} steps ({s['objective']}, {s['corpus']}, "
             f"{s['n_params']:,} parameters, {s['wall_s']:.1f} s)",
             f"test loss {fmt(s['initial_test_loss'])} → {fmt(s['final_test_loss'])}; {escape}"]
    lines += [f"note: {n}" for n in s.get("notes") or []]
    lines += ["attention entropy / ln T per layer: " + ", ".join(fmt(v) for v in s["final_attention_entropy"] or []),
              "token cosine per layer:             " + ", ".join(fmt(v) for v in s["final_cosine"] or []),
              f"theory predicts: {s['predicted_regime']}; observed: rank collapse {s['rank_collapse']}, "
              f"entropy collapse {s['entropy_collapse']}"]
    if out is not None:
        o = Path(out)
        lines.append(f"wrote {o / SUMMARY}, {o / METRICS} and {o / LOSS_PNG}")
    return lines


def plot_losses(metrics: Sequence[dict[str, Any]], unigram: float, path: str | os.PathLike[str],
                title: str = "") -> Path:
    """Test loss (every evaluation) and mean training loss since the previous one against step, with the
    unigram plateau and the escape line (plateau − :data:`ESCAPE_MARGIN`); written atomically."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    for key, style, label in (("test_loss", "o-", "test loss"), ("train_loss", ".--", "training loss (mean)")):
        pts = [(r["step"], r[key]) for r in metrics if r.get(key) is not None and math.isfinite(r[key])]
        if pts:
            ax.plot(*zip(*pts, strict=True), style, ms=3, label=label)
    ax.axhline(unigram, color="gray", ls=":", label=f"unigram plateau {unigram:.3f}")
    ax.axhline(unigram - ESCAPE_MARGIN, color="gray", ls="-.", lw=0.8, label=f"escape (plateau − {ESCAPE_MARGIN:g})")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per predicted token)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    try:
        return savefig_atomic(fig, path, dpi=110)
    finally:
        plt.close(fig)
