"""Tests of sigprop.sweep and ``sigprop sweep``: tiny models (depth 1, width 16, T = 16, 2–3 steps)."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
pytest.importorskip("tokenizers")
pytest.importorskip("transformers")

import sigprop.training.sweep as sw  # noqa: E402
from sigprop.data import prepare  # noqa: E402
from sigprop.spec import Spec  # noqa: E402
from sigprop.train import TrainConfig  # noqa: E402
from sigprop.training.jobs import lock_path  # noqa: E402

T = 16


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def data(cache):
    return prepare("synthetic", seq_len=T, vocab_size=300, n_stories=80, cache_dir=cache)


def cfg(cache, **kw):
    base = dict(steps=2, batch_size=4, seq_len=T, eval_every=2, eval_rows=4, probe_rows=2, vocab_size=300, threads=1,
                n_stories=80, cache_dir=cache, corpus="synthetic")
    base.update(kw)
    return TrainConfig(**base)


SPEC = Spec(depth=1, width=16, seq_len=T)


def _count_run_point(monkeypatch) -> list:
    """Record the 4th argument (the point) of every sweep.run_point call; returns the live list."""
    calls: list = []
    real = sw.run_point

    def counting(*a, **k):
        calls.append(a[3])
        return real(*a, **k)

    monkeypatch.setattr(sw, "run_point", counting)
    return calls


def test_sweep_writes_points_and_rerun_skips(tmp_path, data, cache, monkeypatch):
    calls = _count_run_point(monkeypatch)
    res = sw.sweep(SPEC, [0.5, 3.0], [0.5, 1.5], cfg(cache), tmp_path, workers=1, data=data, plot=False)
    assert len(calls) == 4 and res.ran == 4 and res.skipped == 0
    files = sorted(p.name for p in (tmp_path / "points").iterdir())
    assert files == sorted(f"{sw.point_key(b, a)}.json" for b in (0.5, 3.0) for a in (0.5, 1.5))
    assert not [p for p in (tmp_path / "points").iterdir() if p.name.startswith(".")]  # no temp files left
    rec = json.loads((tmp_path / "points" / f"{sw.point_key(0.5, 0.5)}.json").read_text())
    for k in ("final_test_loss", "unigram_loss", "steps_to_escape", "diverged", "predicted_regime", "fingerprint"):
        assert k in rec
    # rerun: nothing trained
    calls.clear()
    res2 = sw.sweep(SPEC, [0.5, 3.0], [0.5, 1.5], cfg(cache), tmp_path, workers=1, data=data, plot=False)
    assert calls == [] and res2.ran == 0 and res2.skipped == 4
    assert [p["final_test_loss"] for p in res2.points] == [p["final_test_loss"] for p in res.points]
    # another theory rule (ε) relabels the finished points without training them again
    from sigprop.diagram import LABELS, diagram

    res3 = sw.sweep(SPEC, [0.5, 3.0], [0.5, 1.5], cfg(cache), tmp_path, workers=1, data=data, plot=False,
                    diagram_kwargs={"eps": 0.9})
    assert calls == [] and res3.skipped == 4 and res3.to_dict()["theory_rule"]["eps"] == 0.9
    want = diagram(SPEC, ("beta", [0.5, 3.0]), ("alpha_sa", [0.5, 1.5]), eps=0.9).labels
    assert [p["predicted"] for p in res3.points] == [LABELS[int(c)] for c in want.ravel()]
    assert res2.to_dict()["theory_rule"]["eps"] == 0.01
    # a removed point is retrained alone; other settings retrain everything (stale files are replaced)
    (tmp_path / "points" / f"{sw.point_key(3.0, 1.5)}.json").unlink()
    sw.sweep(SPEC, [0.5, 3.0], [0.5, 1.5], cfg(cache), tmp_path, workers=1, data=data, plot=False)
    assert calls == [sw.point_key(3.0, 1.5)]
    calls.clear()
    sw.sweep(SPEC, [0.5, 3.0], [0.5, 1.5], cfg(cache, lr=2e-3), tmp_path, workers=1, data=data, plot=False)
    assert len(calls) == 4


def test_sweep_json_keys_and_png(tmp_path, data, cache):
    res = sw.sweep(SPEC, [0.5, 3.0], [1.0], cfg(cache, steps=4), tmp_path, workers=1, data=data)
    d = json.loads((tmp_path / "sweep.json").read_text())
    # every point runs all its steps (regression: train(out=None) used to stop at the first checkpoint)
    assert all(p["steps_done"] == 4 and not p["diverged"] for p in d["points"]), d["points"]
    for k in ("status", "grid", "spec", "threshold", "definitions", "agreement", "points", "ran", "skipped"):
        assert k in d
    assert d["status"] == "completed" and d["grid"]["beta"] == [0.5, 3.0]
    for p in d["points"]:
        for k in ("key", "beta", "alpha_sa", "predicted", "gain", "measured_trainable", "predicted_trainable",
                  "agree", "final_test_loss", "unigram_loss", "diverged"):
            assert k in p
        assert p["predicted"] in ("trainable", "rank_collapse", "entropy_collapse")
        assert p["gain"] == pytest.approx(p["unigram_loss"] - p["final_test_loss"])
    assert set(d["agreement"]) >= {"fraction", "n_points", "confusion", "mean_gain_by_predicted_region"}
    assert (tmp_path / "sweep.png").stat().st_size > 1000 and res.files["png"].endswith("sweep.png")


def test_agreement_hand_built():
    pts = [
        {"predicted": "trainable", "final_test_loss": 4.0, "unigram_loss": 4.5, "diverged": False},  # gain .5: agree
        {"predicted": "trainable", "final_test_loss": 4.4, "unigram_loss": 4.5, "diverged": False},  # gain .1: disagree
        {"predicted": "entropy_collapse", "final_test_loss": 4.45, "unigram_loss": 4.5, "diverged": False},  # agree
        {"predicted": "rank_collapse", "final_test_loss": 3.0, "unigram_loss": 4.5, "diverged": False},  # disagree
        {"predicted": "trainable", "final_test_loss": 1.0, "unigram_loss": 4.5, "diverged": True},  # diverged: disagree
        {"predicted": "entropy_collapse", "final_test_loss": None, "unigram_loss": 4.5, "diverged": True},  # agree
        {"predicted": "trainable", "final_test_loss": None, "unigram_loss": None, "diverged": False},  # unfinished
    ]
    a = sw.agreement(pts, threshold=0.3)
    assert a["n_points"] == 6 and a["n_agree"] == 3 and a["fraction"] == pytest.approx(0.5)
    assert a["confusion"] == {"predicted_trainable_and_trained": 1, "predicted_trainable_but_did_not": 2,
                              "predicted_not_but_trained": 1, "predicted_not_and_did_not": 2}
    assert [p.get("agree") for p in pts] == [True, False, True, False, False, True, None]
    assert pts[0]["gain"] == pytest.approx(0.5)
    assert sw.agreement(pts, threshold=0.05)["n_agree"] == 4  # gain 0.1 now counts as trained
    # AUC by hand: trainable scores {.5, .1, -inf}, others {.05, 1.5, -inf}; wins counted pairwise (ties ½):
    # .5 beats .05 and -inf (2); .1 beats .05 and -inf (2); -inf ties -inf (½)  →  4.5 / 9
    assert a["auc"] == pytest.approx(4.5 / 9)


def _auc_bruteforce(ranked):
    pos = [g for t, g in ranked if t]
    neg = [g for t, g in ranked if not t]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.one_of(st.floats(-3, 3), st.just(-math.inf),
                                                    st.sampled_from([0.0, 0.5]))), min_size=2, max_size=30))
def test_ranking_auc_matches_pairwise_count(ranked):
    got = sw.ranking_auc(ranked)
    if all(t for t, _ in ranked) or not any(t for t, _ in ranked):
        assert got is None
    else:
        assert got == pytest.approx(_auc_bruteforce(ranked), abs=1e-12)


def test_sweep_dask_local_cluster(tmp_path, cache, data):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cl:
        res = sw.sweep(SPEC, [0.5], [0.5, 1.5], cfg(cache), tmp_path, executor="dask", scheduler=cl.scheduler_address,
                       plot=False)
    assert res.ran == 2 and res.status == "completed" and not res.failed
    assert len(list((tmp_path / "points").glob("*.json"))) == 2


def test_sweep_errors(tmp_path, cache):
    with pytest.raises(ValueError, match="executor"):
        sw.sweep(SPEC, [0.5], [1.0], cfg(cache), tmp_path, executor="nope", plot=False)
    with pytest.raises(ValueError, match="scheduler"):
        sw.sweep(SPEC, [0.5], [1.0], cfg(cache), tmp_path, executor="dask", plot=False)
    with pytest.raises(ValueError, match="scalar"):
        sw.sweep(SPEC.replace(beta=[0.5, 1.0]), [0.5], [1.0], cfg(cache), tmp_path, plot=False)


def test_sweep_cli(tmp_path, cache, data):
    from typer.testing import CliRunner

    from sigprop.cli import app

    r = CliRunner().invoke(app, ["sweep", "--beta-range", "0.5", "3", "2", "--alpha-range", "0.5", "1.5", "1",
                                 "--steps", "2", "--batch-size", "4", "-T", str(T), "--width", "16", "--depth", "1",
                                 "--vocab-size", "300", "--n-stories", "80", "--eval-rows", "4", "--workers", "1",
                                 "--out", str(tmp_path), "--format", "json", "--no-progress"],
                           env={"SIGPROP_CACHE": cache})
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["ran"] == 2 and len(d["points"]) == 2 and "agreement" in d
    bad = CliRunner().invoke(app, ["sweep", "--beta-range", "3", "1", "2", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "lo < hi" in bad.output
    bad_eps = CliRunner().invoke(app, ["sweep", "--eps", "2", "--depth", "1", "--width", "16", "-T", str(T),
                                       "--steps", "2", "--n-stories", "80", "--out", str(tmp_path / "e")],
                                 env={"SIGPROP_CACHE": cache})
    assert bad_eps.exit_code == 2 and "eps" in bad_eps.output and "Traceback" not in bad_eps.output


def test_sweep_skips_point_claimed_by_another_process(tmp_path, data, cache, monkeypatch):
    """Regression: two sweeps into one folder both trained every point. A held claim is not trained
    concurrently: the runner trains the other points first, then waits and takes the holder's file."""
    import threading

    from filelock import FileLock

    calls = _count_run_point(monkeypatch)
    betas, alphas = [0.5, 3.0], [0.5]
    held = sw.point_key(0.5, 0.5)
    path = tmp_path / "points" / f"{held}.json"
    lock_path(path).parent.mkdir(parents=True)
    claimed = threading.Event()
    # the "other process" finishes the held point (same settings) while our sweep runs, then releases
    other = sw.sweep(SPEC, betas, alphas, cfg(cache), tmp_path / "ref", workers=1, data=data, plot=False)
    rec = next(p for p in other.points if p["key"] == held)
    fp = json.loads((tmp_path / "ref" / "points" / f"{held}.json").read_text())["fingerprint"]
    calls.clear()

    def finish_elsewhere():  # another holder (own lock file descriptor, as another process would have)
        with FileLock(str(lock_path(path))):
            claimed.set()
            while sw.point_key(3.0, 0.5) not in calls:
                threading.Event().wait(0.01)
            path.write_text(json.dumps({**{k: rec.get(k) for k in sw.POINT_FIELDS}, "key": held, "beta": 0.5,
                                        "alpha_sa": 0.5, "fingerprint": fp, "test_loss_curve": []}))

    t = threading.Thread(target=finish_elsewhere)
    t.start()
    claimed.wait(10)
    res = sw.sweep(SPEC, betas, alphas, cfg(cache), tmp_path, workers=1, data=data, plot=False)
    t.join()
    assert calls == [sw.point_key(3.0, 0.5)]  # the held point was never trained here
    assert not res.failed, res.failed
    assert res.ran == 1 and res.skipped == 1 and all(p["finished"] for p in res.points)


def test_claim_point_busy_and_wait(tmp_path, cache):
    from filelock import FileLock

    path = tmp_path / "points" / "k.json"
    lock_path(path).parent.mkdir(parents=True)
    import threading

    out = []
    with FileLock(str(lock_path(path))):  # held here; claimed from another thread (own descriptor)
        t = threading.Thread(target=lambda: out.append(
            sw.claim_point(SPEC, cfg(cache).to_dict(), str(path), "k", 0.5, 0.5, "fp", None, False)))
        t.start()
        t.join()
    state, rec = out[0]
    assert (state, rec) == ("busy", None)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"fingerprint": "fp", "key": "k"}))
    assert sw.claim_point(SPEC, cfg(cache).to_dict(), str(path), "k", 0.5, 0.5, "fp", None, True)[0] == "done"


def test_interrupted_sweep_counts_finished_points(tmp_path, data, cache, monkeypatch):
    """Regression: Ctrl-C during the 4th point of a one-worker sweep wrote ``ran: 0`` with 3 points done,
    and the progress bar stayed at 0/4."""
    real = sw.run_point
    n = []

    def interrupt_4th(*a, **k):
        n.append(a[3])
        if len(n) == 4:
            raise KeyboardInterrupt
        return real(*a, **k)

    advanced = []
    monkeypatch.setattr(sw, "run_point", interrupt_4th)
    monkeypatch.setattr(sw, "progress_bar", lambda *a, **k: _RecBar(advanced))
    with pytest.raises(KeyboardInterrupt):
        sw.sweep(SPEC, [0.5, 3.0], [0.5, 1.5], cfg(cache), tmp_path, workers=1, data=data, plot=False, progress=True)
    d = json.loads((tmp_path / "sweep.json").read_text())
    assert d["status"] == "interrupted" and d["ran"] == 3
    assert sum(p["finished"] for p in d["points"]) == 3
    assert len(advanced) == 3  # the bar moved as each point finished


class _RecBar:
    def __init__(self, log):
        self.log = log

    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False

    def advance(self, status=""):
        self.log.append(status)


# ------------------------------------------------------------------------------------------ the job runner
def _square(x, log):
    log.append(x)
    if x < 0:
        raise ValueError(f"negative {x}")
    return {"x": x, "y": x * x}


def test_run_jobs_keeps_records_skips_finished_and_collects_failures(tmp_path):
    """The one runner behind sweeps and the training figures, on a torch-free job: records land in their
    files with the fingerprint, a rerun skips them, a changed fingerprint reruns, a failure is collected
    without losing the other jobs, and a job without a file just runs."""
    from sigprop.progress import NoBar
    from sigprop.training.jobs import Job, read_record, run_jobs

    log: list = []
    folder = tmp_path / "recs"

    def jobs(fp="a"):
        return [Job(f"k{x}", _square, (x, log), fp, str(folder / f"k{x}.json")) for x in (2, 3, -1)] + \
            [Job("free", _square, (5, log), fp, None)]

    advanced = []

    class Bar(NoBar):
        def advance(self, status=""):
            advanced.append(status)

    run = run_jobs(jobs(), workers=1, bar=Bar())
    assert sorted(log) == [-1, 2, 3, 5] and run.ran == 3 and run.skipped == 0 and not run.interrupted
    assert run.records["k3"]["y"] == 9 and run.records["free"]["y"] == 25
    assert [f["key"] for f in run.failed] == ["k-1"] and isinstance(run.errors["k-1"], ValueError)
    assert read_record(folder / "k2.json", "a") == {"x": 2, "y": 4, "fingerprint": "a"}
    assert not (folder / "k-1.json").exists() and sorted(advanced) == ["free", "k-1", "k2", "k3"]
    log.clear()
    again = run_jobs(jobs(), workers=1)
    assert sorted(log) == [-1, 5] and again.skipped == 2 and again.records["k2"] == run.records["k2"]
    log.clear()
    run_jobs(jobs(fp="b"), workers=1)  # other settings: everything reruns, stale files are replaced
    assert sorted(log) == [-1, 2, 3, 5] and read_record(folder / "k2.json", "b") is not None


def test_run_jobs_interrupt_counts_finished_jobs(tmp_path):
    from sigprop.training.jobs import Job, run_jobs

    def stop(x, log):
        if x == 3:
            raise KeyboardInterrupt
        return _square(x, log)

    log: list = []
    run = run_jobs([Job(f"k{x}", stop, (x, log), "fp", str(tmp_path / f"k{x}.json")) for x in (1, 2, 3, 4)], workers=1)
    assert run.interrupted and run.ran == 2 and sorted(run.records) == ["k1", "k2"] and log == [1, 2]
