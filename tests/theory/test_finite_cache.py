"""The finite-T node tables shipped with the package and the on-disk cache must equal fresh quadrature."""

import math

import numpy as np
import pytest

from sigprop.theory import finite


def _shipped():
    finite._shipped = None
    finite._cached_nodes("moments", 512.0, (1, 1), lambda: np.zeros((1, 1)))  # loads the shipped file
    return finite._shipped


def test_shipped_tables_cover_the_documented_lengths():
    shipped = _shipped()
    for n in finite.SHIPPED_N:
        assert any(k.startswith(f"v{finite.TABLE_VERSION}-moments-") and k.endswith(f"-n{float(n)!r}") for k in shipped)
        assert any(k.startswith(f"v{finite.TABLE_VERSION}-overlap-") and k.endswith(f"-n{float(n)!r}") for k in shipped)


@pytest.mark.parametrize("n", [512, 4096])
def test_shipped_moment_nodes_match_direct_quadrature(n):
    """A stale shipped table (quadrature changed, TABLE_VERSION not bumped) fails here."""
    finite.clear_cache()
    table = finite._moment_table(float(n))
    x = np.linspace(0.0, 1.0, table.nodes.shape[0])
    for i in (5, 40, 96, 150):
        b = x[i] / (1 - x[i])
        s = b * math.sqrt(math.log(n))
        row = finite._row_direct(s, float(n))
        np.testing.assert_allclose(table.nodes[i, :5], row[:5], rtol=0, atol=1e-9)


def test_shipped_overlap_nodes_match_direct_quadrature():
    n = 512.0
    finite.clear_cache()
    ot = finite._overlap_table(n)
    nx, nr = ot.nodes.shape
    x = np.linspace(0, 1, nx)
    w = np.linspace(0, 1, nr)
    rho = 1 - w**finite._OV_POW
    for i, j in ((10, 5), (20, 12), (30, 17)):
        b = x[i] / (1 - x[i])
        s = b * math.sqrt(math.log(n))
        y2 = finite._row_direct(s, n)[0]
        o = float(finite.overlap_direct(s, rho[j], n))
        np.testing.assert_allclose(ot.nodes[i, j], (o - 1 / n) / (y2 - 1 / n), atol=1e-7)


def test_user_cache_roundtrip(tmp_path, monkeypatch):
    monkeypatch.setenv("SIGPROP_CACHE", str(tmp_path))
    calls = []

    def compute():
        calls.append(1)
        return np.arange(6.0).reshape(2, 3)

    a = finite._cached_nodes("moments", 12345.0, (2, 3), compute)
    b = finite._cached_nodes("moments", 12345.0, (2, 3), compute)
    assert len(calls) == 1  # second call read the file written atomically by the first
    np.testing.assert_array_equal(a, b)
    assert not list((tmp_path / "finite").glob("*.tmp"))


def test_cached_table_is_built_once_when_threads_ask_together():
    """The chunk threads of a causal propagation ask for the same tables at once (each used to build its
    own copy, and print its 'computing' line twice)."""
    import threading
    import time

    calls = []

    def build(n):
        calls.append(n)
        time.sleep(0.05)  # long enough for every thread to arrive while the first builds
        return object()

    tables: dict = {}
    got = []
    start = threading.Barrier(4)

    def ask():
        start.wait()
        got.append(finite._cached_table(tables, 7.0, build))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [7.0]
    assert len(got) == 4 and all(g is got[0] for g in got)


def test_one_blas_thread_restores_the_count_when_threads_overlap():
    """Two threads inside one_blas_thread with overlapping lifetimes: the BLAS thread count afterwards is the
    one from before (a per-call save/restore left it at 1: the second saver saw the first one's 1)."""
    import threading

    h = finite._openblas_handles()
    if h is None:
        pytest.skip("no OpenBLAS handle in this numpy")
    get, put = h
    before = int(get())
    put(2)
    try:
        a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
        inside = []

        def first():
            with finite.one_blas_thread():
                a_in.set()
                b_in.wait()
            a_out.set()

        def second():
            a_in.wait()
            with finite.one_blas_thread():
                b_in.set()
                a_out.wait()
                inside.append(int(get()))  # still single-threaded while one user remains

        threads = [threading.Thread(target=first), threading.Thread(target=second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert inside == [1]
        assert int(get()) == 2
    finally:
        put(before)
