"""Trainability diagrams (the paper, arXiv 2505.24333) at T = ∞: regions, α_c, boundaries, recommendation, errors."""

import json
import math

import numpy as np
import pytest

from sigprop import diagram as D
from sigprop.spec import Spec

BASE = Spec(depth=60, beta=0.5, rho0=0.03)
BETAS = np.linspace(0.1, 3.0, 30)
ALPHAS = np.linspace(0.0, 3.0, 31)
BETA_C0 = math.sqrt(2 / (1 - 0.03))  # 1.436
ALPHA_C = 1.28


@pytest.fixture(scope="module")
def dia():
    return D.diagram(BASE, ("beta", BETAS), ("alpha_sa", ALPHAS), eps=0.01, finite_T=False)


# --------------------------------------------------------------------------- α_c (§10 item 6, §3.6)


@pytest.mark.parametrize("eps, expected", [(0.01, 1.28), (0.05, 1.51), (0.1, 1.67)])
def test_critical_alpha_L60(eps, expected):
    a = D.critical_alpha(BASE, eps=eps, finite_T=False)
    assert isinstance(a, float)
    assert a == pytest.approx(expected, abs=5e-3)


def test_critical_alpha_depth_list_and_sqrt_L():
    depths = [12, 24, 30, 48, 60, 96]
    a = D.critical_alpha(BASE, depths=depths, eps=0.01, finite_T=False)
    np.testing.assert_allclose(a, [0.47, 0.74, 0.85, 1.12, 1.28, 1.70], atol=5e-3)
    ratio = a / np.sqrt(depths)
    assert np.all((ratio > 0.13) & (ratio < 0.18))
    # roughly constant (paper: 0.14–0.17) while L varies 8-fold (α_c/L would vary ~6-fold)
    assert ratio.max() / ratio.min() < 1.3
    # increasing in L
    assert np.all(np.diff(a) > 0)


def test_critical_alpha_is_the_rank_collapse_threshold():
    a = D.critical_alpha(BASE, eps=0.01, finite_T=False)
    from sigprop.theory.propagate import propagate

    hi = float(propagate(BASE.replace(alpha_sa=a * 1.001), finite_T=False, record=None).rho_final)
    lo = float(propagate(BASE.replace(alpha_sa=a * 0.99), finite_T=False, record=None).rho_final)
    assert hi < 0.99 <= lo


def test_critical_alpha_errors():
    with pytest.raises(ValueError):
        D.critical_alpha(BASE.replace(beta=np.array([0.5, 1.0])), finite_T=False)
    with pytest.raises(ValueError):
        D.critical_alpha(BASE, eps=0.0, finite_T=False)
    with pytest.raises(ValueError):
        D.critical_alpha(BASE, depths=[0, 5], finite_T=False)
    with pytest.raises(ValueError):
        D.critical_alpha(BASE, depths=[2.5], finite_T=False)


# --------------------------------------------------------------------------- regions (§5)


def test_trainable_region_matches_paper(dia):
    assert dia.labels.shape == (ALPHAS.size, BETAS.size)
    h_b, h_a = BETAS[1] - BETAS[0], ALPHAS[1] - ALPHAS[0]
    B, A = np.meshgrid(BETAS, ALPHAS)
    expected = (B < BETA_C0) & (A > ALPHA_C)
    # compare away from the boundaries (one grid step)
    clear = (np.abs(B - BETA_C0) > h_b) & (np.abs(A - ALPHA_C) > h_a)
    got = dia.labels == D.TRAINABLE
    np.testing.assert_array_equal(got[clear], expected[clear])
    assert got.any() and (~got).any()


def test_rank_collapse_for_all_beta_at_alpha_le_1(dia):
    rows = ALPHAS <= 1.0
    assert np.all(dia.labels[rows] == D.RANK)


def test_entropy_collapse_above_beta_c(dia):
    # β > β_c(ρ0) and α well above α_c: not rank-collapsed, condensed at layer 1
    B, A = np.meshgrid(BETAS, ALPHAS)
    sel = (B > BETA_C0 + 0.1) & (A > 2.0)
    assert np.all(dia.labels[sel] == D.ENTROPY)
    # intermediate α (≈ 1.25–1.5): large β is entropy collapse, small β rank collapse (the paper, arXiv 2505.24333)
    i = int(np.argmin(np.abs(ALPHAS - 1.2)))
    assert dia.labels[i, BETAS < 1.3].tolist() == [D.RANK] * int(np.sum(BETAS < 1.3))
    assert np.all(dia.labels[i, BETAS > 2.5] == D.ENTROPY)


def test_low_beta_boundary_flat_in_beta(dia):
    cols = BETAS < BETA_C0 - 1e-9
    rho = dia.rho_final[:, cols]
    np.testing.assert_allclose(rho, rho[:, :1] * np.ones_like(rho), atol=1e-14)
    lab = dia.labels[:, cols]
    assert np.all(lab == lab[:, :1])


def test_labels_consistent_with_where(dia):
    rng = np.random.default_rng(0)
    for _ in range(12):
        i, j = int(rng.integers(ALPHAS.size)), int(rng.integers(BETAS.size))
        spec = BASE.replace(beta=float(BETAS[j]), alpha_sa=float(ALPHAS[i]))
        assert D.where(spec, eps=0.01, finite_T=False) == D.LABELS[int(dia.labels[i, j])]
        assert dia.label_at(BETAS[j], ALPHAS[i]) == D.LABELS[int(dia.labels[i, j])]


def test_fractions_sum_to_one(dia):
    fr = dia.fractions()
    assert set(fr) == set(D.LABELS.values())
    assert sum(fr.values()) == pytest.approx(1.0)


def test_recommend_from_returns_trainable_point(dia):
    rec = D.recommend_from(dia)
    assert rec is not None
    assert rec.x_name == "beta" and rec.y_name == "alpha_sa"
    assert rec.x < BETA_C0 and rec.y > ALPHA_C
    assert D.where(rec.spec, eps=0.01, finite_T=False) == "trainable"
    assert rec.rho_final < 0.99 and rec.margin > 0
    json.dumps(rec.to_dict())
    # a diagram with no trainable point recommends nothing
    none = D.diagram(BASE, ("beta", [0.5, 3.0]), ("alpha_sa", [0.2, 0.5]), finite_T=False)
    assert D.recommend_from(none) is None


def test_boundaries_are_touching_label_pairs(dia):
    lab = dia.labels
    pairs = set()
    for i in range(lab.shape[0]):
        for j in range(lab.shape[1]):
            for di, dj in ((0, 1), (1, 0)):
                if i + di < lab.shape[0] and j + dj < lab.shape[1] and lab[i, j] != lab[i + di, j + dj]:
                    pairs.add(tuple(sorted((D.LABELS[int(lab[i, j])], D.LABELS[int(lab[i + di, j + dj])]))))
    bnd = dia.boundaries()
    assert {tuple(sorted(b["between"])) for b in bnd} == pairs
    assert ("rank_collapse", "trainable") in pairs
    for b in bnd:
        assert b["between"][0] != b["between"][1]
        for x, y in b["points"]:
            # a boundary point is the midpoint of two neighbouring cells whose labels are the pair
            j = np.searchsorted(BETAS, x - 1e-9)
            i = np.searchsorted(ALPHAS, y - 1e-9)
            on_x = not np.isclose(BETAS[min(j, BETAS.size - 1)], x)
            if on_x:
                a, c = lab[i, j - 1], lab[i, j]
            else:
                a, c = lab[i - 1, j], lab[i, j]
            assert sorted((D.LABELS[int(a)], D.LABELS[int(c)])) == sorted(b["between"])


def test_to_dict_json(dia):
    d = dia.to_dict()
    s = json.dumps(d, allow_nan=False)
    back = json.loads(s)
    assert back["x"]["name"] == "beta" and back["y"]["name"] == "alpha_sa"
    assert len(back["labels"]) == ALPHAS.size and len(back["labels"][0]) == BETAS.size
    assert set(np.unique(back["labels"])) <= set(D.LABELS.values())
    assert back["rule"]["eps"] == 0.01 and back["rule"]["finite_T"] is False
    assert isinstance(back["boundaries"], list)


def test_eps_moves_rank_boundary():
    loose = D.diagram(BASE, ("beta", [0.5]), ("alpha_sa", ALPHAS), eps=0.1, finite_T=False)
    tight = D.diagram(BASE, ("beta", [0.5]), ("alpha_sa", ALPHAS), eps=0.01, finite_T=False)
    # larger ε: more rank collapse
    assert np.sum(loose.labels == D.RANK) >= np.sum(tight.labels == D.RANK)
    first_ok = ALPHAS[np.argmax(loose.labels[:, 0] == D.TRAINABLE)]
    assert first_ok == pytest.approx(1.67, abs=ALPHAS[1] - ALPHAS[0])


def test_entropy_rules():
    kw = dict(finite_T=False, eps=0.01)
    x = ("beta", [0.5, 1.5, 3.0])
    y = ("alpha_sa", [2.5])
    any_ = D.diagram(BASE, x, y, entropy_rule="any", **kw).labels
    first = D.diagram(BASE, x, y, entropy_rule="first", **kw).labels
    assert any_.tolist() == first.tolist() == [[D.TRAINABLE, D.ENTROPY, D.ENTROPY]]
    # classify directly: a point condensed in 10 of 60 layers, not at the first
    lab = D.classify(0.5, 10, False, 60, entropy_rule="fraction", entropy_fraction=0.5)
    assert int(lab) == D.TRAINABLE
    assert int(D.classify(0.5, 10, False, 60, entropy_rule="any")) == D.ENTROPY
    assert int(D.classify(0.5, 10, False, 60, entropy_rule="first")) == D.TRAINABLE
    assert int(D.classify(0.995, 60, True, 60)) == D.RANK


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(eps=0.0),
        dict(eps=1.0),
        dict(eps=-0.1),
        dict(entropy_rule="most"),
        dict(entropy_rule="fraction", entropy_fraction=0.0),
        dict(entropy_rule="fraction", entropy_fraction=1.5),
        dict(x=("gamma", [1.0, 2.0])),
        dict(y=("depth", [1, 2])),
        dict(x=("alpha_sa", [1.0]), y=("alpha_sa", [2.0])),
        dict(x=("beta", [])),
        dict(x=("beta", [-1.0, 1.0])),
    ],
)
def test_diagram_errors(kwargs):
    with pytest.raises(ValueError):
        D.diagram(BASE, **{"x": ("beta", [0.5, 1.0]), "y": ("alpha_sa", [1.0, 2.0]), "finite_T": False, **kwargs})


def test_diagram_needs_scalar_spec():
    with pytest.raises(ValueError):
        D.diagram(BASE.replace(beta=np.array([0.5, 1.0])), finite_T=False)
    with pytest.raises(ValueError):
        D.where(BASE, eps=2.0, finite_T=False)


def test_causal_diagram_is_one_vectorised_propagation():
    """A causal diagram (per-position state over the grid) equals the propagation of each point alone."""
    from sigprop.theory.propagate import propagate

    spec = Spec(depth=5, causal=True, seq_len=128, norm="pre", alpha_mlp=1.0)
    betas, alphas = np.array([0.3, 1.2, 2.5]), np.array([0.5, 1.0, 1.7, 3.0])
    d = D.diagram(spec, ("beta", betas), ("alpha_sa", alphas))
    for i, a in enumerate(alphas):
        for j, b in enumerate(betas):
            pt = propagate(spec.replace(beta=float(b), alpha_sa=float(a)), record=None)
            assert d.rho_final[i, j] == pytest.approx(float(pt.rho_final), abs=1e-9)  # summation order only


def test_causal_diagram_reports_progress_per_layer(monkeypatch):
    """A causal diagram (seconds of work) reports the layers propagated: monotone, ending at the depth, and
    the same labels as without the callback. The grid spans three chunks so the chunked path is used."""
    from sigprop.theory import propagate as P

    monkeypatch.setattr(P, "CHUNK", 8)
    spec = Spec(depth=3, causal=True, seq_len=64)
    seen = []
    axes = (("beta", np.linspace(0.2, 3.0, 6)), ("alpha_sa", np.linspace(0.2, 2.0, 4)))
    d = D.diagram(spec, *axes, progress=lambda ell, L: seen.append((ell, L)))
    assert seen and all(L == 3 for _, L in seen)
    layers = [ell for ell, _ in seen]
    assert layers == sorted(layers) and layers[-1] == 3 and max(layers) == 3
    np.testing.assert_array_equal(d.labels, D.diagram(spec, *axes).labels)


def test_cli_causal_diagram_shows_a_progress_bar(tmp_path, capsys):
    from sigprop.cli import main

    rc = main(["diagram", "--causal", "--depth", "3", "--seq-len", "64", "--beta-range", "0.2", "3", "5",
               "--alpha-range", "0.2", "2", "4", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 0
    assert "blocks propagated" in err and "3/3" in err, err
