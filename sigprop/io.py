"""Writing results: JSON encoding and atomic writes, in one place.

Every file sigprop writes (figures, JSON, checkpoints, caches) goes through :func:`atomic_path` or
:func:`write_atomic`: the data land in a temporary file beside the target, which then replaces it with
``os.replace``, so a reader (or an interrupted run) never sees half a file. The result gets the mode a plain
``open(path, "w")`` would give (``0o666`` minus the umask), not the ``0o600`` of a bare ``mkstemp``, so
collaborators on a shared machine can read it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["atomic_path", "default_mode", "dumps", "jsonable", "write_atomic"]

_UMASK_LOCK = threading.Lock()


def default_mode() -> int:
    """The permission bits a plain file creation gives now: ``0o666 & ~umask``."""
    with _UMASK_LOCK:  # the umask can only be read by setting it; restore it at once
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` (with :func:`default_mode`).

    On an exception (or ``KeyboardInterrupt``) the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, default_mode())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8, or bytes) to ``path`` atomically, fsynced; returns the path."""
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(path)


def jsonable(obj: Any) -> Any:
    """Numpy scalars/arrays → Python; NaN/inf → None (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def dumps(obj: Any) -> str:
    """Strict, indented JSON of ``obj`` after :func:`jsonable`."""
    return json.dumps(jsonable(obj), indent=2, allow_nan=False)
