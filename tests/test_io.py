"""sigprop.io: atomic writes give the mode a plain write would (0o666 & ~umask), not mkstemp's 0o600."""

from __future__ import annotations

import os
import stat

import pytest

from sigprop.io import atomic_path, default_mode, dumps, jsonable, write_atomic


@pytest.fixture
def umask():
    old = os.umask(0o022)
    os.umask(old)

    def set_(m):
        os.umask(m)

    yield set_
    os.umask(old)


@pytest.mark.parametrize(("mask", "want"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_write_atomic_mode_follows_umask(tmp_path, umask, mask, want):
    umask(mask)
    assert default_mode() == want
    p = write_atomic(tmp_path / "a" / "x.json", dumps({"a": 1}))
    assert stat.S_IMODE(p.stat().st_mode) == want
    with atomic_path(tmp_path / "fig.png") as tmp:
        tmp.write_bytes(b"png")
    assert stat.S_IMODE((tmp_path / "fig.png").stat().st_mode) == want
    assert sorted(q.name for q in tmp_path.iterdir()) == ["a", "fig.png"]  # no temp files left
    assert os.umask(mask) == mask  # reading the umask left it unchanged


def test_atomic_path_failure_keeps_old_file(tmp_path):
    write_atomic(tmp_path / "x.txt", "old")
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "x.txt") as tmp:
        tmp.write_text("half")
        raise RuntimeError
    assert (tmp_path / "x.txt").read_text() == "old" and len(list(tmp_path.iterdir())) == 1


def test_checkpoint_and_figure_writers_use_default_mode(tmp_path, umask):
    np = pytest.importorskip("numpy")
    umask(0o022)
    from sigprop.plot import pyplot as _plt
    from sigprop.plot import savefig_atomic

    plt = _plt()
    fig = plt.figure()
    savefig_atomic(fig, tmp_path / "d.png")
    plt.close(fig)
    assert stat.S_IMODE((tmp_path / "d.png").stat().st_mode) == 0o644
    assert jsonable({"a": np.float64("nan"), "b": np.arange(2)}) == {"a": None, "b": [0, 1]}


def test_common_reexports():
    from sigprop.commands import common

    assert common.write_atomic is write_atomic and common.dumps is dumps and common.jsonable is jsonable
