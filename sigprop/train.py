"""Training the torch twin of a :class:`~sigprop.Spec` on a language-modelling task, the way users would trust.

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
  atomically (temporary file + ``os.replace``): model, optimiser, scheduler, RNG states, step, data
  position, running sums, the metrics so far. ``resume=True`` continues from it (the configuration must
  match) and ends with exactly the metrics of an uninterrupted run. ``metrics.jsonl`` is rewritten from
  the checkpoint on resume, so records logged after it by a killed run are dropped.
* **Divergence**: a non-finite loss or gradient norm, or a training loss above ``diverge_loss`` (default
  ``3 ln V``: far worse than the uniform predictor), stops the run *before* the bad update is applied;
  the summary says ``diverged: true`` with the reason, and ``checkpoint.pt`` keeps the last good state
  (checkpoints are never written from non-finite parameters).
* **Ctrl-C**: with ``handle_sigint`` (the CLI), the first Ctrl-C finishes the current step, checkpoints,
  writes the summary (status ``interrupted``) and raises ``KeyboardInterrupt``; a ``KeyboardInterrupt``
  raised by a callback is handled the same way.

Outputs in ``out``: ``metrics.jsonl`` (one JSON record per evaluation), ``summary.json`` (atomic; see
:class:`TrainResult`), ``checkpoint.pt``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import os
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sigprop.progress import bar as progress_bar
from sigprop.spec import Spec

__all__ = ["TrainConfig", "TrainResult", "train", "load_checkpoint", "ESCAPE_MARGIN", "EVAL_SEED"]

#: a run has "escaped" the unigram plateau at the first evaluation with test loss ≤ unigram − this (nats)
ESCAPE_MARGIN = 0.3
#: seed of the fixed masking of the evaluation rows (independent of the run seed)
EVAL_SEED = 1234
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
#: configuration fields that must agree between a checkpoint and the run that resumes it
_RESUME_KEYS = (
    "corpus", "steps", "batch_size", "seq_len", "lr", "warmup", "weight_decay", "grad_clip", "seed",
    "vocab_size", "mlm_probability", "dropout", "emb_std", "pos_std", "freeze_uniform_attention",
    "objective", "eval_every", "eval_rows", "probe_rows", "n_stories",
)


@dataclass
class TrainConfig:
    """Settings of one training run (defaults: the authors' recipe, docs/theory.md §8)."""

    corpus: str = "synthetic"
    steps: int = 1000
    batch_size: int = 64
    seq_len: int = 64
    lr: float = 5e-4
    warmup: float = 0.05
    weight_decay: float = 0.01
    grad_clip: float | None = 1.0
    seed: int = 0
    vocab_size: int = 2000
    mlm_probability: float = 0.15
    objective: str | None = None
    dropout: float = 0.0
    emb_std: float = 0.1
    pos_std: float = 0.1
    freeze_uniform_attention: bool = False
    eval_every: int | None = None
    eval_rows: int = 256
    probe_rows: int = 8
    checkpoint_every: int | None = None
    diverge_loss: float | None = None
    device: str = "cpu"
    threads: int | None = 2
    n_stories: int | None = None
    cache_dir: str | None = None
    stop_after: int | None = None
    rank_threshold: float = 0.9
    entropy_threshold: float = 0.1

    def __post_init__(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ValueError(msg)

        need(isinstance(self.steps, int) and self.steps >= 1, f"steps must be an integer ≥ 1; got {self.steps!r}")
        need(self.batch_size >= 1, f"batch_size must be ≥ 1; got {self.batch_size}")
        need(self.seq_len >= 2, f"seq_len must be ≥ 2; got {self.seq_len}")
        need(math.isfinite(self.lr) and self.lr > 0, f"lr must be finite and > 0; got {self.lr}")
        need(0 <= self.warmup < 1, f"warmup must be a fraction in [0, 1); got {self.warmup}")
        need(self.weight_decay >= 0, f"weight_decay must be ≥ 0; got {self.weight_decay}")
        need(self.grad_clip is None or self.grad_clip > 0, f"grad_clip must be > 0 or None; got {self.grad_clip}")
        need(0 < self.mlm_probability <= 1, f"mlm_probability must be in (0, 1]; got {self.mlm_probability}")
        need(0 <= self.dropout < 1, f"dropout must be in [0, 1); got {self.dropout}")
        need(self.objective in (None, "mlm", "clm"), f"objective must be 'mlm' or 'clm'; got {self.objective!r}")
        need(self.eval_every is None or self.eval_every >= 1, f"eval_every must be ≥ 1; got {self.eval_every}")
        need(self.checkpoint_every is None or self.checkpoint_every >= 1,
             f"checkpoint_every must be ≥ 1; got {self.checkpoint_every}")
        need(self.eval_rows >= 1 and self.probe_rows >= 1, "eval_rows and probe_rows must be ≥ 1")
        need(self.threads is None or self.threads >= 1, f"threads must be ≥ 1; got {self.threads}")
        need(self.stop_after is None or self.stop_after >= 1, f"stop_after must be ≥ 1; got {self.stop_after}")
        need(str(self.device).split(":")[0] in ("cpu", "cuda"), f"device must be 'cpu' or 'cuda'; got {self.device!r}")

    @property
    def eval_interval(self) -> int:
        return self.eval_every or max(1, self.steps // 20)

    @property
    def checkpoint_interval(self) -> int:
        return self.checkpoint_every or max(self.eval_interval, self.steps // 10)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TrainResult:
    """``summary`` (also ``summary.json``) and ``metrics`` (the records of ``metrics.jsonl``)."""

    summary: dict[str, Any]
    metrics: list[dict[str, Any]] = field(default_factory=list)

    def __getitem__(self, key: str) -> Any:
        return self.summary[key]


# ----------------------------------------------------------------------------------------- helpers
def _atomic_bytes(path: Path, data: bytes) -> None:
    from sigprop.io import write_atomic

    write_atomic(path, data)


def _write_json_atomic(path: Path, obj: Any) -> None:
    from sigprop.io import dumps

    _atomic_bytes(path, (dumps(obj) + "\n").encode())


def _json_line(rec: dict[str, Any]) -> str:
    from sigprop.io import jsonable

    return json.dumps(jsonable(rec), allow_nan=False)


def load_checkpoint(path: str | os.PathLike[str], map_location: str = "cpu") -> dict[str, Any]:
    """Load a ``checkpoint.pt`` (a folder is accepted too) written by :func:`train`."""
    p = Path(path)
    if p.is_dir():
        p = p / CHECKPOINT
    return torch.load(p, map_location=map_location, weights_only=False)


def _lr_lambda(total: int, warmup_frac: float):
    warm = int(math.ceil(warmup_frac * total))

    def f(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        return max(0.0, (total - step) / max(1, total - warm))

    return f


def _step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + int(step) * 7_919 + 17) % (2**63 - 1))


class _Order:
    """Training-row order: a fresh permutation of the N rows per epoch, from (seed, epoch) only."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed = n, seed
        self._cache: dict[int, torch.Tensor] = {}

    def perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._cache:
            self._cache = {epoch: torch.randperm(self.n, generator=_step_generator(self.seed + 1, -1 - epoch))}
        return self._cache[epoch]

    def rows(self, start: int, count: int) -> torch.Tensor:
        idx = []
        for pos in range(start, start + count):
            idx.append(self.perm(pos // self.n)[pos % self.n])
        return torch.stack(idx)


class _SigintFlag:
    """First Ctrl-C sets ``hit`` (the loop checkpoints at the next step boundary); the second one raises."""

    def __init__(self, enabled: bool) -> None:
        self.hit = False
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self._old: Any = None

    def __enter__(self) -> _SigintFlag:
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
def _threads(n: int | None) -> Iterator[None]:
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


class _State:
    """What a HuggingFace callback sees as ``state`` (``global_step``, ``max_steps``, ``log_history``)."""

    def __init__(self, max_steps: int) -> None:
        self.global_step = 0
        self.max_steps = max_steps
        self.log_history: list[dict[str, Any]] = []


class _Control:
    """Stand-in for ``transformers.TrainerControl``: callbacks may set ``should_training_stop``."""

    def __init__(self) -> None:
        self.should_training_stop = False
        self.should_evaluate = False
        self.should_save = False
        self.should_log = False


# ----------------------------------------------------------------------------------------- training
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
        raise ValueError("--device cuda requested but torch.cuda.is_available() is False")
    if resume and out is None:
        raise ValueError("resume needs an output folder")
    outdir = Path(out) if out is not None else None

    if data is None:
        from sigprop.data import prepare

        data = prepare(config.corpus, seq_len=config.seq_len, vocab_size=config.vocab_size,
                       n_stories=config.n_stories, cache_dir=config.cache_dir)
    if data.seq_len != config.seq_len:
        raise ValueError(f"data rows have length {data.seq_len}, config.seq_len is {config.seq_len}")

    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), _threads(config.threads):
        return _train(spec, config, outdir, data, device, resume, list(callbacks), progress, handle_sigint)


def _train(spec, config, outdir, data, device, resume, callbacks, progress, handle_sigint) -> TrainResult:
    from sigprop.monitor import CollapseMonitor
    from sigprop.nn.heads import IGNORE_INDEX, LanguageModel, freeze_uniform_attention, lm_loss
    from sigprop.nn.modules import TransformerStack

    t0 = time.perf_counter()
    torch.manual_seed(config.seed)
    if device.type == "cuda":
        torch.cuda.manual_seed_all(config.seed)
    objective = config.objective or ("clm" if spec.causal else "mlm")
    V = data.vocab_size
    stack = TransformerStack(spec, vocab_size=V, max_position=max(spec.seq_len, config.seq_len),
                             emb_std=config.emb_std, pos_std=config.pos_std, dropout=config.dropout,
                             seed=config.seed)
    model = LanguageModel(stack, objective)
    if config.freeze_uniform_attention:
        freeze_uniform_attention(model)
        for block in model.stack.blocks:
            block.attn.q.weight.requires_grad_(False)
            block.attn.k.weight.requires_grad_(False)
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=config.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(config.steps, config.warmup))
    diverge_loss = config.diverge_loss if config.diverge_loss is not None else 3.0 * math.log(V)
    unigram = float(data.unigram_loss if objective == "mlm" else data.unigram_loss_all)
    tok = data.tokenizer
    pad = tok.pad_token_id

    # -- batches
    def make_batch(rows: torch.Tensor, gen: torch.Generator) -> dict[str, torch.Tensor]:
        if objective == "mlm":
            from sigprop.data import mlm_collate

            b = mlm_collate(rows, tok, mlm_probability=config.mlm_probability, generator=gen)
        else:
            from sigprop.data import clm_targets

            b = clm_targets(rows, pad_token_id=pad)
        return {k: v.to(device) for k, v in b.items()}

    order = _Order(int(data.train.shape[0]), config.seed)
    eval_rows = data.test[: config.eval_rows]
    eval_gen = torch.Generator().manual_seed(EVAL_SEED)
    eval_batches = [make_batch(eval_rows[i : i + config.batch_size], eval_gen)
                    for i in range(0, eval_rows.shape[0], config.batch_size)]
    probe_ids = data.test[: config.probe_rows]
    probe_batch = {"input_ids": probe_ids, "attention_mask": (probe_ids != pad).long() if pad is not None
                   else torch.ones_like(probe_ids)}
    monitor = CollapseMonitor(probe_batch, every=0, rank_threshold=config.rank_threshold,
                              entropy_threshold=config.entropy_threshold)

    @torch.no_grad()
    def evaluate() -> float:
        was = model.training
        model.eval()
        total, count = 0.0, 0
        for b in eval_batches:
            logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"])["logits"]
            total += float(lm_loss(logits, b["labels"], objective, reduction="sum"))
            lab = b["labels"][:, 1:] if objective == "clm" else b["labels"]
            count += int((lab != IGNORE_INDEX).sum())
        model.train(was)
        return total / max(count, 1)

    # -- state
    step = 0
    run: dict[str, Any] = {"loss_sum": 0.0, "loss_n": 0, "grad_norm": None}
    metrics: list[dict[str, Any]] = []
    ckpt_path = outdir / CHECKPOINT if outdir else None
    metrics_path = outdir / METRICS if outdir else None
    cfg_dict = config.to_dict()

    def params_finite() -> bool:
        return all(bool(torch.isfinite(p).all()) for p in model.parameters())

    def save_checkpoint() -> bool:
        """Write a checkpoint; False only when the parameters are non-finite (never saved).

        Without an output folder there is nothing to write, which is not a failure.
        """
        if not params_finite():
            return False
        if ckpt_path is None:
            return True
        rng = {"torch": torch.get_rng_state()}
        if device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(device)
        blob = {
            "format": "sigprop-train-1", "step": step, "samples_seen": step * config.batch_size,
            "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "rng": rng, "run": dict(run), "metrics": list(metrics), "monitor": monitor.state_dict(),
            "config": cfg_dict, "spec": spec.to_dict(), "data_fingerprint": data.fingerprint,
            "objective": objective, "vocab_size": V,
        }
        buf = io.BytesIO()
        torch.save(blob, buf)
        _atomic_bytes(ckpt_path, buf.getvalue())
        return True

    resumed_from = None
    if resume and ckpt_path is not None and ckpt_path.exists():
        ck = load_checkpoint(ckpt_path, map_location="cpu")
        diffs = [k for k in _RESUME_KEYS if ck["config"].get(k) != cfg_dict.get(k)]
        if ck["spec"] != spec.to_dict():
            diffs.append("spec")
        if ck["data_fingerprint"] != data.fingerprint:
            diffs.append("corpus contents")
        if diffs:
            raise ValueError(f"cannot resume from {ckpt_path}: {', '.join(diffs)} differ from the checkpoint; "
                             "use the same options or a new --out")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        torch.set_rng_state(ck["rng"]["torch"])
        if device.type == "cuda" and "cuda" in ck["rng"]:
            torch.cuda.set_rng_state(ck["rng"]["cuda"], device)
        step, run, metrics = int(ck["step"]), dict(ck["run"]), list(ck["metrics"])
        monitor.load_state_dict(ck["monitor"])
        resumed_from = step
    if metrics_path is not None:  # fresh run: empty file; resume: exactly the checkpoint's records
        _atomic_bytes(metrics_path, "".join(_json_line(r) + "\n" for r in metrics).encode())

    state = _State(config.steps)
    state.global_step = step
    control = _Control()

    def fire(event: str, **kw: Any) -> None:
        for cb in callbacks:
            fn = getattr(cb, event, None)
            if fn is not None:
                fn(config, state, control, model=model, **kw)

    def record_eval() -> dict[str, Any]:
        test_loss = evaluate()
        mon = monitor.check(model, step)
        rec = {
            "step": step, "test_loss": test_loss,
            "train_loss": run["loss_sum"] / run["loss_n"] if run["loss_n"] else None,
            "lr": sched.get_last_lr()[0] if step else 0.0, "grad_norm": run["grad_norm"],
            "attention_entropy": mon["attn_entropy_norm"], "cosine": mon["cosine"],
            "rank_collapse": mon["rank_collapse"], "entropy_collapse": mon["entropy_collapse"],
            "escaped": test_loss <= unigram - ESCAPE_MARGIN,
        }
        run["loss_sum"], run["loss_n"] = 0.0, 0
        metrics.append(rec)
        state.log_history.append(rec)
        if metrics_path is not None:
            with open(metrics_path, "a") as fh:
                fh.write(_json_line(rec) + "\n")
        fire("on_evaluate", metrics=rec)
        return rec

    status, reason = "running", None
    bar = progress_bar(progress, "train", config.steps, step)
    session_steps = 0
    safe = True  # at a step boundary: the state is consistent and may be checkpointed
    try:
        with _SigintFlag(handle_sigint) as sig, bar:
            fire("on_train_begin")
            if step == 0 and resumed_from is None:
                rec = record_eval()
                if not math.isfinite(rec["test_loss"]):
                    status, reason = "diverged", "non-finite test loss at initialisation"
                save_checkpoint()
            model.train()
            while status == "running" and step < config.steps:
                safe = False
                b = make_batch(data.train[order.rows(step * config.batch_size, config.batch_size)],
                               _step_generator(config.seed, step))
                loss = model(**b)["loss"]
                lv = float(loss.detach())
                if not math.isfinite(lv) or lv > diverge_loss:
                    what = "non-finite" if not math.isfinite(lv) else f"{lv:.4g} > diverge_loss {diverge_loss:.4g}"
                    status, reason = "diverged", f"training loss {what} at step {step + 1}"
                    safe = True
                    break
                loss.backward()
                gn = torch.nn.utils.clip_grad_norm_(params, config.grad_clip if config.grad_clip else math.inf)
                gn = float(gn)
                if not math.isfinite(gn):
                    opt.zero_grad(set_to_none=True)
                    status, reason = "diverged", f"non-finite gradient norm at step {step + 1}"
                    safe = True
                    break
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                step += 1
                if not params_finite():  # the update itself blew up: stop before evaluating or saving
                    status, reason = "diverged", f"non-finite parameters after step {step}"
                    session_steps += 1
                    state.global_step = step
                    safe = True
                    break
                session_steps += 1
                state.global_step = step
                run["loss_sum"] += lv
                run["loss_n"] += 1
                run["grad_norm"] = gn
                safe = True
                bar.advance(f"loss {lv:.3f}")
                if step % config.eval_interval == 0 or step == config.steps:
                    rec = record_eval()
                    if not math.isfinite(rec["test_loss"]):
                        status, reason = "diverged", f"non-finite test loss at step {step}"
                        break
                fire("on_step_end")  # after the evaluation, so an interrupt here checkpoints a complete step
                if step % config.checkpoint_interval == 0 and step < config.steps:
                    if not save_checkpoint():
                        status, reason = "diverged", f"non-finite parameters at step {step}"
                        break
                if sig.hit:
                    raise KeyboardInterrupt
                if control.should_training_stop:
                    status = "stopped"
                    save_checkpoint()
                    break
                if config.stop_after is not None and session_steps >= config.stop_after:
                    status = "stopped"
                    save_checkpoint()
                    break
            if status == "running":
                status = "completed"
                save_checkpoint()
            fire("on_train_end")
    except KeyboardInterrupt:
        if safe:
            save_checkpoint()
        summary = _summary(spec, config, data, objective, unigram, metrics, step, "interrupted",
                           "interrupted by the user" + ("" if safe else " mid-step; kept the previous checkpoint"),
                           model, t0, resumed_from)
        if outdir is not None:
            _write_json_atomic(outdir / "summary.json", summary)
        raise
    summary = _summary(spec, config, data, objective, unigram, metrics, step, status, reason, model, t0, resumed_from)
    if outdir is not None:
        _write_json_atomic(outdir / SUMMARY, summary)
    return TrainResult(summary=summary, metrics=metrics)


def _summary(spec, config, data, objective, unigram, metrics, step, status, reason, model, t0, resumed_from):
    finite = [r for r in metrics if r.get("test_loss") is not None and math.isfinite(r["test_loss"])]
    last = finite[-1] if finite else None
    escape = next((r["step"] for r in finite if r["test_loss"] <= unigram - ESCAPE_MARGIN), None)
    try:
        from sigprop.diagram import where

        regime = where(spec)
    except Exception as exc:  # the theory may not cover every spec the twin can train
        regime = None
        reason = reason if reason else None
        theory_error = f"{type(exc).__name__}: {exc}"
    else:
        theory_error = None
    out = {
        "status": status,
        "diverged": status == "diverged",
        "reason": reason,
        "steps_done": step,
        "steps": config.steps,
        "final_test_loss": last["test_loss"] if last else None,
        "initial_test_loss": finite[0]["test_loss"] if finite and finite[0]["step"] == 0 else None,
        "best_test_loss": min((r["test_loss"] for r in finite), default=None),
        "unigram_loss": unigram,
        "escape_margin": ESCAPE_MARGIN,
        "steps_to_escape": escape,
        "predicted_regime": regime,
        "final_attention_entropy": last["attention_entropy"] if last else None,
        "final_cosine": last["cosine"] if last else None,
        "rank_collapse": bool(last and last["rank_collapse"]),
        "entropy_collapse": bool(last and last["entropy_collapse"]),
        "objective": objective,
        "corpus": data.corpus_name,
        "vocab_size": data.vocab_size,
        "n_params": sum(p.numel() for p in model.parameters()),
        "resumed_from_step": resumed_from,
        "wall_s": time.perf_counter() - t0,
        "spec": spec.to_dict(),
        "config": config.to_dict(),
    }
    if theory_error:
        out["theory_error"] = theory_error
    return out
