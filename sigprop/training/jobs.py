"""One job runner for everything that trains many models: sweeps and the training figures.

A :class:`Job` is a picklable call ``fn(*args) -> dict`` (a record) with a key, an optional result file and
a fingerprint of its settings. :func:`run_jobs` runs a list of them through an executor and keeps each
finished record in its file **as soon as it finishes** (atomically, through :mod:`sigprop.io`):

* a job whose file holds a record with the same fingerprint is not run again (``skipped``), so an
  interrupted sweep or figure resumes with only its unfinished jobs; a stale file is replaced;
* each job with a file is **claimed** first (an OS file lock, ``filelock``, on ``<folder>/../.locks/<name>.lock``):
  runners started at once into the same folder never run a job twice concurrently. A job another
  process holds is left for later, then waited for and taken from its file;
* Ctrl-C: the records finished so far are counted, :attr:`JobRun.interrupted` is set and the caller
  decides (write its summary, re-raise).

Executors (anything with ``submit(fn, *args)`` returning futures): ``"local"`` (a process pool of
``workers`` spawned processes with ``threads`` torch threads each; one worker runs the jobs in this
process), ``"dask"`` (``distributed.Client(scheduler).get_executor()``), or an executor object.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from sigprop.io import dumps, write_atomic
from sigprop.progress import NoBar
from sigprop.spec import Spec
from sigprop.training.config import RUNTIME_KEYS

__all__ = ["Job", "JobRun", "InlineExecutor", "claim", "executor", "fingerprint", "lock_path", "read_record",
           "run_jobs", "cached_data"]


def fingerprint(spec: Spec, config_dict: dict[str, Any]) -> str:
    """Hash of a spec and the training settings that change a result (not :data:`RUNTIME_KEYS`)."""
    cfg = {k: v for k, v in config_dict.items() if k not in RUNTIME_KEYS}
    blob = json.dumps({"spec": spec.to_dict(), "config": cfg}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def read_record(path: str | os.PathLike[str] | None, fp: str) -> dict[str, Any] | None:
    """The record in ``path`` if it exists, parses and has fingerprint ``fp``; else ``None``."""
    if path is None:
        return None
    try:
        rec = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and rec.get("fingerprint") == fp else None


def lock_path(path: str | os.PathLike[str]) -> Path:
    """The claim file of the record file ``folder/<name>.json``: ``folder/../.locks/<name>.lock`` (outside
    the record folder, so that folder holds only finished records)."""
    path = Path(path)
    return path.parent.parent / ".locks" / f"{path.stem}.lock"


def claim(path: str | os.PathLike[str] | None, fp: str, fn: Callable[..., dict[str, Any]], args: tuple,
          wait: bool = False) -> tuple[str, dict[str, Any] | None]:
    """Run ``fn(*args)`` unless another process has the job: ``("ran", record)`` (written to ``path`` with
    ``fingerprint = fp``), ``("done", record)`` when a matching record exists once the claim is held, or
    ``("busy", None)`` when another process holds the claim and ``wait`` is false (with ``wait`` the call
    blocks until it is released). Without ``path`` the job just runs. The returned record is the JSON
    round trip of what was written, so a fresh and a resumed run see the same types."""
    if path is None:
        return "ran", _round_trip(fn(*args), fp)
    from filelock import FileLock, Timeout

    lock_file = lock_path(path)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_file))
    try:
        lock.acquire(timeout=-1 if wait else 0)
    except Timeout:
        return "busy", None
    try:
        done = read_record(path, fp)
        if done is not None:
            return "done", done
        text = dumps(_stamp(fn(*args), fp))
        write_atomic(path, text + "\n")
        return "ran", json.loads(text)
    finally:
        lock.release()


def _stamp(rec: dict[str, Any], fp: str) -> dict[str, Any]:
    return {**rec, "fingerprint": fp}


def _round_trip(rec: dict[str, Any], fp: str) -> dict[str, Any]:
    return json.loads(dumps(_stamp(rec, fp)))


# -------------------------------------------------------------------------------------------- executors
def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(max(1, int(threads)))


_P = ParamSpec("_P")
_T = TypeVar("_T")


class InlineExecutor(cf.Executor):
    """Runs each task when submitted (one local worker: no subprocess, Ctrl-C lands in the job itself)."""

    def submit(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> cf.Future[_T]:
        fut: cf.Future[_T] = cf.Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - delivered through the future like a pool would
            fut.set_exception(exc)
        return fut


@contextlib.contextmanager
def executor(kind: Any = "local", workers: int | None = None, scheduler: str | None = None,
             threads: int = 1) -> Iterator[Any]:
    """An executor for ``kind`` (``"local"``, ``"dask"`` or a ready executor object), shut down on exit."""
    if not isinstance(kind, str):
        yield kind  # a ready executor supplied by the caller
        return
    if kind == "local":
        if (workers or 1) <= 1:
            yield InlineExecutor()
            return
        import multiprocessing as mp

        ex = cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                    initializer=_init_worker, initargs=(threads,))
        try:
            yield ex
        finally:
            ex.shutdown(wait=True, cancel_futures=True)
        return
    if kind == "dask":
        yield from _dask_executor(scheduler)
        return
    raise ValueError(f"executor must be 'local' or 'dask'; got {kind!r}")


def _dask_executor(scheduler: str | None) -> Iterator[Any]:
    try:
        from distributed import Client
    except ImportError:
        raise ValueError('executor "dask" needs Dask: pip install "dask[distributed]"') from None
    if not scheduler:
        raise ValueError("executor 'dask' needs scheduler=ADDRESS (e.g. tcp://host:8786) of a running cluster")
    client = Client(scheduler)
    try:
        yield client.get_executor(pure=False)
    finally:
        client.close()


# -------------------------------------------------------------------------------------------- runner
@dataclass
class Job:
    """``fn(*args) -> record``, kept in ``path`` (``None``: not kept) under ``fingerprint``."""

    key: str
    fn: Callable[..., dict[str, Any]]
    args: tuple
    fingerprint: str
    path: str | None = None


@dataclass
class JobRun:
    """What :func:`run_jobs` did: ``records`` by key (finished jobs only), how many ran here or were
    ``skipped`` (found finished, here or by another process), ``failed`` (key, error) and the exceptions."""

    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    ran: int = 0
    skipped: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    errors: dict[str, BaseException] = field(default_factory=dict)
    interrupted: bool = False


class _Runner:
    """Submits jobs, collects each finished future once, retries jobs held by another process."""

    def __init__(self, ex: Any, bar: Any, run: JobRun) -> None:
        self.ex, self.bar, self.run = ex, bar, run
        self.futs: dict[Any, Job] = {}
        self.handled: set[Any] = set()
        self.busy: list[Job] = []

    def submit(self, job: Job, wait: bool) -> None:
        f = self.ex.submit(claim, job.path, job.fingerprint, job.fn, job.args, wait)
        self.futs[f] = job
        if f.done():  # an in-process executor has already run it: count and show it now
            self.collect(f)

    def collect(self, f: Any, show: bool = True) -> None:
        if f in self.handled:
            return
        self.handled.add(f)
        job = self.futs[f]
        try:
            state, rec = f.result()
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - one failed job must not lose the others
            self.run.failed.append({"key": job.key, "error": f"{type(exc).__name__}: {exc}"})
            self.run.errors[job.key] = exc
        else:
            if state == "busy":
                self.busy.append(job)
                return
            self.run.records[job.key] = rec
            if state == "ran":
                self.run.ran += 1
            else:
                self.run.skipped += 1
        if show:
            self.bar.advance(job.key)

    def drain(self) -> None:
        for f in cf.as_completed([f for f in self.futs if f not in self.handled]):
            self.collect(f)

    def salvage(self) -> None:
        """After Ctrl-C: count the jobs that finished before it."""
        for f in list(self.futs):
            if f.done() and not f.cancelled():
                with contextlib.suppress(BaseException):
                    self.collect(f, show=False)


def run_jobs(jobs: Sequence[Job], *, executor_kind: Any = "local", workers: int | None = None,
             scheduler: str | None = None, threads: int = 1, bar: Any = None) -> JobRun:
    """Run ``jobs`` (see the module docstring); ``bar``: a :mod:`sigprop.progress` bar, advanced once per
    finished job (jobs found finished in their files are counted in ``skipped`` without advancing it).

    Returns the :class:`JobRun`; on Ctrl-C it is returned with ``interrupted`` set (callers re-raise)."""
    run = JobRun()
    bar = bar if bar is not None else NoBar()
    todo = []
    for job in jobs:
        hit = read_record(job.path, job.fingerprint)
        if hit is not None:
            run.records[job.key] = hit
            run.skipped += 1
        else:
            todo.append(job)
    runner = None
    try:
        with bar, executor(executor_kind, workers, scheduler, threads) as ex:
            runner = _Runner(ex, bar, run)
            for job in todo:  # first pass: jobs another process is running are left for later
                runner.submit(job, wait=False)
            runner.drain()
            retry, runner.busy = runner.busy, []
            for job in retry:  # second pass: wait for the other process, then use its file (or run)
                runner.submit(job, wait=True)
            runner.drain()
    except KeyboardInterrupt:
        if runner is not None:
            runner.salvage()
        run.interrupted = True
    return run


# -------------------------------------------------------------------------------------------- data
_DATA_CACHE: dict[tuple, Any] = {}


def cached_data(config: Any) -> Any:
    """The prepared corpus of a :class:`~sigprop.training.TrainConfig`, cached per process (workers of a
    pool train many points on the same data)."""
    from sigprop.data import prepare

    key = (config.corpus, config.seq_len, config.vocab_size, config.n_stories, config.cache_dir)
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()
        _DATA_CACHE[key] = prepare(config.corpus, seq_len=config.seq_len, vocab_size=config.vocab_size,
                                   n_stories=config.n_stories, cache_dir=config.cache_dir)
    return _DATA_CACHE[key]
