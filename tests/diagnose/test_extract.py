"""Effective parameters: the config path (init recorded on the meta device, nothing allocated) agrees with
the weights of a built model, and the mapping to β, α_MLP, ρ₀ matches closed forms."""

import math
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from diagnose_configs import small_configs  # noqa: E402

from sigprop.diagnose import archs, diagnose  # noqa: E402
from sigprop.diagnose.extract import Reader, effective, recorded_init  # noqa: E402
from sigprop.spec import beta_from_std  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CONFIGS = small_configs()


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_recorded_init_matches_measured_weights(name):
    """Second moments from the recorded init distributions vs those of a model built by transformers
    (d = 256: 65 536 entries per matrix, relative sampling error of a second moment ≈ √(2/N) < 1%;
    tolerance 4%)."""
    cfg = CONFIGS[name]
    arch = archs.arch_for(cfg.model_type)
    meta, rec = recorded_init(cfg, archs.builder(arch))
    assert all(p.device.type == "meta" for p in meta.parameters())
    theory = effective(meta, cfg, arch, Reader(rec), cfg.model_type)
    torch.manual_seed(0)
    built = archs.builder(arch)(cfg)
    meas = effective(built, cfg, arch, Reader(), cfg.model_type)
    for field in ("beta_unit", "sigma_v2", "sigma_w2", "sigma_w2_out"):
        np.testing.assert_allclose(getattr(meas, field), getattr(theory, field), rtol=0.04, err_msg=field)
    assert meas.q0 == pytest.approx(theory.q0, rel=0.04)
    assert meas.p0 == pytest.approx(theory.p0, rel=0.2, abs=1e-9)
    assert (meas.width, meas.heads, meas.head_dim, meas.d_ff) == (theory.width, theory.heads, theory.head_dim, theory.d_ff)


def test_bert_base_closed_forms():
    """BERT-base from the checkpoint table: β = σ² d / √ln T (spec.beta_from_std, an independent formula),
    α_MLP = √(σ² d / (σ² d_ff)) = 0.5, ρ₀ = 1/3 (token type shared by three equal-variance tables), exact."""
    d = diagnose("bert-base-uncased", measure=False)
    assert d.support == "exact" and d.reasons == []
    assert d.spec.beta == pytest.approx(beta_from_std(0.02, width=768, seq_len=512), rel=1e-9)
    assert d.spec.beta == pytest.approx(0.123, abs=5e-4)
    assert d.spec.alpha_mlp == pytest.approx(0.5, rel=1e-9)
    assert d.spec.sigma_v2 == pytest.approx((0.02**2 * 768) ** 2, rel=1e-9)
    assert d.spec.rho0 == pytest.approx(1 / 3, rel=1e-9)
    assert d.spec.norm == "post" and d.spec.q0 == 1.0


def test_gpt2_pre_ln_q0_and_output_scaling():
    """GPT-2: pre-LN, q₀ = 2σ² = 8·10⁻⁴ (token + position), residual projections scaled by 1/√(2L)."""
    d = diagnose("gpt2", measure=False)
    s = d.spec
    assert s.norm == "pre" and s.causal
    assert s.q0 == pytest.approx(2 * 0.02**2, rel=1e-9)
    L = 12
    assert s.sigma_v2 == pytest.approx((0.02**2 * 768) * (0.02**2 / (2 * L) * 768), rel=1e-9)
    assert s.w2_out == pytest.approx(0.02**2 / (2 * L) * 3072, rel=1e-9)


def test_t5_logit_scale_one():
    """T5 has no 1/√d_h: σ_Q σ_K d √d_h = (d d_kv)^{-1/2} d^{-1/2} d √d_kv = 1, so β = 1/√ln T."""
    d = diagnose("t5-small", measure=False, seq_len=512)
    assert d.spec.beta == pytest.approx(1 / math.sqrt(math.log(512)), rel=1e-9)


def test_modernbert_truncated_normal_variance():
    """ModernBERT draws from a normal truncated at ±2σ (initializer_cutoff_factor 2): variance × 0.7737."""
    cfg = transformers.ModernBertConfig()
    meta, rec = recorded_init(cfg, archs.builder(archs.arch_for("modernbert")))
    w = meta.layers[0].mlp.Wi.weight
    mean, var = rec[id(w)]
    factor = 1 - 2 * 2 * math.exp(-2) / math.sqrt(2 * math.pi) / math.erf(2 / math.sqrt(2))
    assert factor == pytest.approx(0.7737, abs=1e-4)
    assert var == pytest.approx(0.02**2 * factor, rel=1e-6)


def test_big_config_allocates_nothing():
    """A Llama-2-7B config (27 GB of fp32 weights) is diagnosed from its recorded init: the peak resident
    memory of a fresh interpreter that does only this stays below one layer's fp32 weights (4 × 4096² +
    3 × 4096 × 11008 floats = 809 MB). Measured in a subprocess, since a peak (VmHWM) that this test process
    reached earlier would hide any growth."""
    code = ("from sigprop import diagnose; from sigprop.diagnose.stream import peak_rss_mb; "
            "diagnose('meta-llama/Llama-2-7b-hf', measure=False, seq_len=2048); print(peak_rss_mb())")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    peak_mb = float(run.stdout.split()[-1])
    layer_mb = (4 * 4096**2 + 3 * 4096 * 11008) * 4 / 2**20
    assert peak_mb < 0.85 * layer_mb, (peak_mb, layer_mb)
    d = diagnose("meta-llama/Llama-2-7b-hf", measure=False, seq_len=2048)
    assert d.spec.width == 4096 and d.spec.depth == 32
    assert d.spec.beta == pytest.approx(0.02**2 * 4096 / math.sqrt(math.log(2048)), rel=1e-9)  # 0.59
    assert d.support == "approximate" and any("RoPE" in r for r in d.reasons)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_closed_forms_match_recorded_init(name):
    """The fast path's closed-form init variances (sigprop.diagnose.formulas) equal the distributions the
    model's own _init_weights uses (recorded on the meta device) for every built-in family."""
    from sigprop.diagnose.formulas import effective_from_config

    cfg = CONFIGS[name]
    arch = archs.arch_for(cfg.model_type)
    fast = effective_from_config(cfg, arch)
    assert fast is not None
    meta, rec = recorded_init(cfg, archs.builder(arch))
    slow = effective(meta, cfg, arch, Reader(rec), cfg.model_type)
    for field in ("beta_unit", "sigma_v2", "sigma_bv2", "sigma_w2", "sigma_w2_out", "sigma_b2"):
        np.testing.assert_allclose(getattr(fast, field), getattr(slow, field), rtol=1e-9, atol=1e-15, err_msg=field)
    assert (fast.q0, fast.p0, fast.embed_norm) == pytest.approx((slow.q0, slow.p0, slow.embed_norm), rel=1e-9)
    assert (fast.width, fast.heads, fast.kv_heads, fast.head_dim, fast.inner, fast.d_ff, fast.depth, fast.logit_scale) == \
        (slow.width, slow.heads, slow.kv_heads, slow.head_dim, slow.inner, slow.d_ff, slow.depth, pytest.approx(slow.logit_scale))
