"""``sigprop.diagnose``: the effective Spec of a real model, its verdict, and the empirical check.

:func:`diagnose` reads a model's initialisation (from its weights, or from its config's init recorded on
the ``meta`` device), maps it to an effective :class:`sigprop.Spec` (arXiv 2505.24333 conventions,
docs/theory.md §1; the mapping in :mod:`sigprop.diagnose.extract`), places it in the trainability
diagram (:func:`sigprop.report`), and — unless ``measure=False`` — builds the model from its config over
``seeds`` seeds, probes it on random tokens and compares measured per-layer token cosine ρ and attention
entropy / ln T with the theory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sigprop.diagnose import archs as _archs
from sigprop.diagnose.extract import Effective, Reader, effective, layers_of, recorded_init
from sigprop.diagnose.resolve import Target, full_config, resolve
from sigprop.spec import Spec
from sigprop.theory.propagate import propagate

__all__ = ["Diagnosis", "diagnose", "effective_spec", "SUPPORT_LEVELS"]

SUPPORT_LEVELS = ("exact", "approximate", "unsupported")
#: models whose fp32 weights exceed this are measured block by block (sigprop.diagnose.stream)
STREAM_BYTES = 2 * 1024**3
DEFAULT_SEQ_LEN = 512


@dataclass
class Diagnosis:
    """The result of :func:`diagnose` (see :meth:`to_dict` for the JSON contract).

    ``support``: ``exact`` (the Spec is the model), ``approximate`` (``reasons`` say why), or
    ``unsupported`` (``reasons`` say why; no spec). ``predicted``/``measured``: per-layer rows with
    ``layer``, ``rho`` (p̄/q̄, the theory's all-token cosine), ``attn_entropy_norm`` (row entropy / ln of
    the keys it sees), and measured ``cosine``, ``q``, ``logit_var`` with their seed std.
    """

    model_type: str
    name: str
    support: str
    reasons: list[str]
    spec: Spec | None = None
    effective: Effective | None = field(default=None, repr=False)
    report: Any = field(default=None, repr=False)
    predicted: list[dict[str, Any]] | None = None
    measured: list[dict[str, Any]] | None = None
    notes: list[str] = field(default_factory=list)
    target: Target | None = field(default=None, repr=False)
    seeds: int = 0
    fixed: dict[str, Any] | None = None
    arch: Any = field(default=None, repr=False)

    # ------------------------------------------------------------------ summaries
    @property
    def label(self) -> str | None:
        return self.report.region if self.report is not None else None

    @property
    def verdict(self) -> str | None:
        return self.report.verdict.text if self.report is not None else None

    def errors(self) -> tuple[float | None, float | None]:
        """Max over layers of |measured − predicted| ρ and attention entropy / ln T (None if unmeasured)."""
        return compare(self.predicted, self.measured)

    def recommend(self, **kwargs: Any) -> dict[str, Any]:
        """The fix: β and the Q/K std it means, α_SA, α_MLP (see :func:`sigprop.diagnose.fix.recommend`)."""
        from sigprop.diagnose.fix import recommend

        return recommend(self, **kwargs)

    def apply(self, model: Any, recommendation: dict[str, Any] | None = None) -> Any:
        """Apply :meth:`recommend` to ``model`` in place (see :func:`sigprop.diagnose.fix.apply`)."""
        from sigprop.diagnose.fix import apply

        return apply(self, model, recommendation or self.recommend())

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract: model_type, support, reasons, spec, label, verdict, recommendation, predicted,
        measured, max_abs_err_rho, max_abs_err_entropy (and ``fixed`` after a fix)."""
        from sigprop.io import jsonable

        err_rho, err_ent = self.errors()
        rec = None
        if self.spec is not None and self.report is not None:
            rec = {k: v for k, v in self.recommend().items() if k != "spec"}
        out = {
            "model_type": self.model_type,
            "name": self.name,
            "support": self.support,
            "reasons": list(self.reasons),
            "notes": list(self.notes),
            "spec": self.spec.to_dict() if self.spec is not None else None,
            "label": self.label,
            "verdict": self.verdict,
            "warnings": list(self.report.verdict.warnings) if self.report is not None else [],
            "margins": _margins(self) if self.report is not None else None,
            "recommendation": rec,
            "predicted": self.predicted,
            "measured": self.measured,
            "seeds": self.seeds,
            "max_abs_err_rho": err_rho,
            "max_abs_err_entropy": err_ent,
        }
        if self.fixed is not None:
            out["fixed"] = self.fixed
        return jsonable(out)

    def summary(self) -> str:
        """Human-readable report (the CLI's text output)."""
        lines = [f"{self.name} ({self.model_type}): support {self.support.upper()}"]
        lines += [f"  reason: {r}" for r in self.reasons]
        lines += [f"  note: {n}" for n in self.notes]
        if self.spec is None:
            return "\n".join(lines)
        s = self.spec
        lines.append(f"Effective spec: {s.norm}-LN {s.norm_type}, {s.block}, {s.activation}, L={s.depth}, T={s.seq_len}, "
                     f"d={s.width}, heads={s.heads}, β={s.beta:.4g}, α_SA={s.alpha_sa:.4g}, α_MLP={s.alpha_mlp:.4g}, "
                     f"σ_v²={s.sigma_v2:.4g}, σ_w²={s.sigma_w2:.4g}, σ_w,out²={s.w2_out:.4g}, ρ₀={s.rho0:.3g}, q₀={s.q0:.3g}"
                     + (", causal" if s.causal else "") + (f", RoPE {s.rope_fraction:g}" if s.rope_fraction else ""))
        if self.report is not None:
            lines.append(self.report.verdict.text)
            rec = self.recommend()
            lines.append(f"Recommended: β = {rec['beta']:.3f} (W_Q, W_K std {rec['qk_std']:.4g}), α_SA = {rec['alpha_sa']:.3f}, "
                         f"α_MLP = {rec['alpha_mlp']:.3f}" + (f", attention {rec['attention']}" if rec["attention"] != "softmax" else ""))
        er, ee = self.errors()
        if er is not None:
            lines.append(f"Measured over {self.seeds} seed(s): max |Δρ| = {er:.4f}, max |Δ entropy/ln T| = {ee:.4f}")
        if self.fixed is not None:
            fr, fe = self.fixed.get("max_abs_err_rho"), self.fixed.get("max_abs_err_entropy")
            lines.append(f"Fixed model: label {self.fixed.get('label')}"
                         + (f", max |Δρ| = {fr:.4f}, max |Δ entropy| = {fe:.4f}" if fr is not None else ""))
        return "\n".join(lines)


def _margins(d: Diagnosis) -> dict[str, Any]:
    v = d.report.verdict
    s = d.spec
    assert s is not None  # a report is only made from a spec (diagnose)
    return {"rho_final": v.rho_final, "beta": s.beta, "beta_c": v.beta_c,
            "beta_over_beta_c": s.beta / v.beta_c if v.beta_c and math.isfinite(v.beta_c) else None,
            "alpha_sa": s.alpha_sa, "alpha_c": v.alpha_c, "grad_vanishing": v.grad_vanishing}


def compare(pred: list[dict[str, Any]] | None, meas: list[dict[str, Any]] | None) -> tuple[float | None, float | None]:
    """Max |Δρ| over layers and max |Δ entropy/ln T| over layers ≥ 1 (NaNs skipped)."""
    if not pred or not meas:
        return None, None
    n = min(len(pred), len(meas))
    dr = [abs(meas[i]["rho"] - pred[i]["rho"]) for i in range(n)
          if _finite(meas[i].get("rho")) and _finite(pred[i].get("rho"))]
    de = [abs(meas[i]["attn_entropy_norm"] - pred[i]["attn_entropy_norm"]) for i in range(1, n)
          if _finite(meas[i].get("attn_entropy_norm")) and _finite(pred[i].get("attn_entropy_norm"))]
    return (max(dr) if dr else None), (max(de) if de else None)


def _finite(v: Any) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


# ------------------------------------------------------------------------------------ support
def unsupported_reasons(config: Any) -> list[str]:
    """Why a config cannot be diagnosed at all (cross-attention, mixture of experts, …); empty if it can."""
    if config is None:
        return []
    why = []
    mt = getattr(config, "model_type", "")
    if getattr(config, "add_cross_attention", False) or (getattr(config, "is_encoder_decoder", False) and mt != "t5"):
        why.append("cross-attention (encoder-decoder): the theory covers self-attention stacks only")
    for key in ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts"):
        v = getattr(config, key, None)
        if isinstance(v, int) and v > 1:
            why.append(f"mixture of experts ({key}={v}): routed MLPs are not in the theory")
            break
    if getattr(config, "alibi", False) or mt in ("bloom", "mpt"):
        why.append("ALiBi position biases on the logits are not in the theory")
    return why


def _theory_gaps(spec: Spec) -> tuple[Spec, list[str]]:
    """Fields this installation's theory ignores or cannot compute, found by propagating two tiny specs
    that differ only in that field; the returned spec is one the theory can run (gated MLPs fall back to
    their plain activation, with a reason)."""
    reasons = []
    # a probe point where every field matters (correlated tokens, β of order 1); the spec's own point may
    # hide a field (RoPE does nothing at ρ = 0)
    small = spec.replace(depth=2, rho0=0.5, beta=1.0)
    try:
        propagate(small, record=("rho",))
    except (ValueError, KeyError, NotImplementedError, TypeError) as exc:
        if spec.gated:
            from sigprop.spec import GATED

            assert isinstance(spec.activation, str)  # spec.gated: a name in GATED
            plain = GATED[spec.activation]
            reasons.append(f"this installation's theory has no kernel for {spec.activation} ({str(exc)[:80]}); "
                           f"predicted with {plain}")
            spec = spec.replace(activation=plain)
            small = spec.replace(depth=2, rho0=0.5, beta=1.0)
        else:
            raise
    base = propagate(small, record=("rho", "entropy")).rho
    assert base is not None  # recorded
    defaults = {"sigma_w2_out": None, "block": "sequential", "rope_fraction": 0.0}
    if spec.window is not None and spec.window < spec.seq_len:
        defaults["window"] = None
    for name, default in defaults.items():
        if getattr(spec, name) == default or (name == "sigma_w2_out" and np.allclose(spec.w2_out, spec.sigma_w2)):
            continue
        other = propagate(small.replace(**{name: default}), record=("rho",)).rho
        assert other is not None  # recorded
        if np.allclose(other, base, rtol=0, atol=1e-12):
            reasons.append(f"this installation's theory ignores {name}={getattr(spec, name)!r} (merge the theory branch)")
    return spec, reasons


# ------------------------------------------------------------------------------------ spec
def effective_spec(eff: Effective, seq_len: int) -> tuple[Spec, list[str]]:
    """The effective :class:`Spec` of ``eff`` at sequence length T = ``seq_len`` (per-layer means), and the
    notes on what was folded where (module docstring of :mod:`sigprop.diagnose.extract`)."""
    st = eff.settings
    notes = []
    lnT = math.log(seq_len)
    beta = float(np.mean(eff.beta_unit)) / math.sqrt(lnT)
    sv2, sbv2 = float(np.mean(eff.sigma_v2)), float(np.mean(eff.sigma_bv2))
    w2, w2o, b2 = float(np.mean(eff.sigma_w2)), float(np.mean(eff.sigma_w2_out)), float(np.mean(eff.sigma_b2))
    if w2 <= 0 or w2o <= 0:
        raise ValueError(f"{eff.model_type}: the MLP weights have zero variance (σ_w² = {w2:g}, σ_w,out² = {w2o:g})")
    q0_raw, p0 = eff.q0, eff.p0
    if q0_raw <= 0:
        q0_raw, p0 = 1.0, 0.0
        notes.append("no embedding tables known for this model: the theory starts from ρ₀ = 0, q₀ = 1")
    rho0 = min(max(p0 / q0_raw, 0.0), 1.0)
    q0 = 1.0 if eff.embed_norm else q0_raw
    kw: dict[str, Any] = dict(
        depth=eff.depth, norm=st["norm"], attention="softmax", activation=st["activation"], beta=beta,
        sigma_v2=sv2, sigma_bv2=sbv2, sigma_b2=b2, sigma_w2=w2, seq_len=seq_len, heads=eff.heads,
        width=eff.width, mlp_ratio=min(max(eff.d_ff / eff.width, 1e-3), 64.0), causal=bool(st["causal"]),
        rho0=rho0, q0=q0, block=st["block"], norm_type=st["norm_type"], rope_fraction=st["rope_fraction"],
        rope_theta=st["rope_theta"], kv_heads=eff.kv_heads if eff.kv_heads != eff.heads else None,
        window=st["window"])
    if st["norm"] == "post":
        # LN(x + MLP(x)) with W₂ of variance σ_w,out² = LN(α x + MLP'(x)) with W₂' of variance σ_w²: α = √(σ_w²/σ_w,out²)
        kw["alpha_mlp"] = math.sqrt(w2 / w2o)
        kw["sigma_b2"] = b2
        notes.append(f"post-LN: MLP output scale σ_w,out² = {w2o:.4g} realised as α_MLP = √(σ_w²/σ_w,out²) = {kw['alpha_mlp']:.4g} "
                     "(LayerNorm scale invariance)")
    else:
        kw["sigma_w2_out"] = w2o
    notes.append(f"β = σ_Q σ_K d · s √d_h / √ln T = {beta:.4g} at T = {seq_len} (s = {eff.logit_scale:.4g}, d_h = {eff.head_dim})")
    return Spec(**kw), notes


# ------------------------------------------------------------------------------------ theory rows
def predicted_rows(spec: Spec) -> list[dict[str, Any]]:
    """Per-layer theory rows (``layer``, ``rho``, ``attn_entropy_norm``, ``q``, ``y2``, ``condensed``).

    ``attn_entropy_norm`` is on the measurement's footing at the source: the theory's causal mean of row
    entropy / ln n_t leaves out the row with a single key (t = 1), as :func:`sigprop.measure.attention_stats`
    does (``RowGeometry.entropy_w``; uniform attention → 1 on both sides).
    """
    prop = propagate(spec, record=("rho", "q", "entropy", "y2", "condensed"))
    rho, q, entropy, y2, condensed = prop.rho, prop.q, prop.entropy, prop.y2, prop.condensed
    assert rho is not None and q is not None and entropy is not None and y2 is not None and condensed is not None
    rows = []
    for ell in range(spec.depth + 1):
        rows.append({"layer": ell, "rho": float(rho[ell]), "q": float(q[ell]),
                     "attn_entropy_norm": float(entropy[ell]) if ell else None,
                     "y2": float(y2[ell]) if ell else None, "condensed": bool(condensed[ell]) if ell else None})
    return rows


# ------------------------------------------------------------------------------------ entry point
def _arch_and_effective(target: Target) -> tuple[_archs.Arch, Effective, list[str]]:
    """Find the architecture and read the effective parameters (recorded init for a config, weights for a
    model). Returns reasons for an unsupported target instead of raising for structural gaps."""
    config, model = target.config, target.model
    model_type = getattr(config, "model_type", None) if config is not None else None
    arch = _archs.arch_for(model_type) or (_archs.arch_for(type(model).__name__) if model is not None else None)
    reasons: list[str] = []
    if model is None:
        if arch is None:
            build = _archs.builder(None)
            meta, rec = recorded_init(config, build)
            model_for_generic = meta
        else:
            from sigprop.diagnose.formulas import effective_from_config

            fast = effective_from_config(config, arch)  # closed forms: nothing built, nothing imported
            if fast is not None:
                return arch, fast, reasons
            config = target.config = full_config(config)  # a light view: the recorded init needs the real one
            meta, rec = recorded_init(config, _archs.builder(arch))
            assert model_type is not None  # arch_for found it among arch.model_types
            return arch, effective(meta, config, arch, Reader(rec), model_type), reasons
    else:
        model_for_generic = model
    if arch is None:
        from sigprop.measure import hook_points

        try:
            points = hook_points(model_for_generic)
        except TypeError:
            raise ValueError(f"{target.name}: no transformer blocks with attention found (not a supported model)") from None
        block = points.blocks[0]
        path = _layers_path(model_for_generic, points.blocks)
        arch = _archs.generic_arch(block, path) if path else None
        if arch is None:
            raise ValueError(f"{target.name}: no query/key/value projections found in its blocks; register its roles with "
                             "sigprop.diagnose.register_arch")
        reasons.append("generic path (roles found by module names; norm placement and activation assumed pre-LN GELU); "
                       "register the architecture with sigprop.diagnose.register_arch for an exact diagnosis")
    reader = Reader(rec if model is None else None)
    return arch, effective(model_for_generic, config, arch, reader, model_type or type(model_for_generic).__name__), reasons


def _layers_path(model: Any, blocks: list[Any]) -> str | None:
    for name, mod in model.named_modules():
        if isinstance(mod, __import__("torch").nn.ModuleList) and len(mod) == len(blocks) and mod[0] is blocks[0]:
            return name
    return None


def diagnose(target: Any, *, seq_len: int | None = None, depth: int | None = None, seeds: int = 3,
             measure: bool = True, overrides: dict[str, Any] | None = None, batch: int = 2,
             device: str = "cpu", report_grid: int = 60, stream: bool | None = None) -> Diagnosis:
    """Diagnose a model's initialisation.

    Parameters
    ----------
    target : a checkpoint name (:mod:`sigprop.diagnose.checkpoints`), a ``model_type``, a local folder or
        ``config.json``, a ``transformers`` config, or any ``torch.nn.Module`` (its weights are read as they are).
    seq_len : T for β (ln T) and the probe (default: the config's positions, at most 512; ViT: its patches + 1).
    depth : override the number of layers (configs only).
    seeds : models built and probed (configs) or random inputs (a given module); 0 with ``measure``.
    measure : run the empirical check (``False``: the theory verdict only, no weights allocated; a checkpoint
        name or ``model_type`` of a built-in family is then read without ``transformers`` or ``torch``, and
        ``Diagnosis.target.config`` is a :class:`~sigprop.diagnose.light.LightConfig` —
        :func:`sigprop.diagnose.resolve.full_config` gives the ``transformers`` config).
    overrides : config fields to change (the CLI's ``--set key=value``).
    batch : random sequences per seed. device : where probes run (``"cuda"`` honoured).
    report_grid : points per axis of the β × α_SA diagram behind the verdict and recommendation.
    stream : measure block by block (default: when the fp32 weights exceed 2 GiB).
    """
    if not isinstance(seeds, int) or isinstance(seeds, bool) or not 0 <= seeds <= 100:
        raise ValueError(f"seeds must be an integer in [0, 100]; got {seeds!r}")
    if seq_len is not None and (isinstance(seq_len, bool) or not isinstance(seq_len, int) or not 2 <= seq_len <= 1_000_000):
        raise ValueError(f"seq_len must be an integer in [2, 1000000]; got {seq_len!r}")
    # theory only: a checkpoint name or model_type resolves to a light config view (no transformers, no torch)
    tgt = resolve(target, overrides, depth, light=not (measure and seeds > 0))
    model_type = getattr(tgt.config, "model_type", None) or type(tgt.model).__name__
    why = unsupported_reasons(tgt.config)
    if why:
        return Diagnosis(model_type, tgt.name, "unsupported", why, target=tgt)
    arch, eff, reasons = _arch_and_effective(tgt)
    T = _seq_len(tgt, seq_len)
    spec, notes = effective_spec(eff, T)
    reasons = reasons + list(eff.reasons)
    if spec.rope_fraction > 0:
        reasons.append("RoPE: the logit variance depends on the key distance (q(q − c̄p)); the theory's c̄ is a "
                       "key-pair average, so errors grow near β_c")
    if spec.causal and spec.norm == "pre" and (spec.gated or spec.rope_fraction > 0):
        reasons.append("pre-LN decoder: the residual-stream norm q_t depends on the position t; the theory tracks "
                       "position-averaged statistics")
    if spec.window is not None and spec.window < T:
        reasons.append(f"sliding window {spec.window} < T = {T}: rows see at most {spec.window} keys")
    if eff.settings.get("local_window") and T <= int(eff.settings["local_window"]) // 2 + 1:
        reasons = [r for r in reasons if not r.startswith("local attention")]
        notes.append(f"local attention windows (±{int(eff.settings['local_window']) // 2}) cover all T = {T} tokens")
    _t5_bias_note(tgt, arch, eff, reasons, notes)
    run_spec, gaps = _theory_gaps(spec)
    reasons += gaps
    from sigprop.diagram import report

    grid_b = np.linspace(0.02, 4.0, report_grid)
    grid_a = np.linspace(0.0, 3.0, report_grid)
    rep = report(run_spec, grid_b, grid_a)
    diag = Diagnosis(model_type, tgt.name, "approximate" if reasons else "exact", reasons, spec, eff, rep,
                     predicted_rows(run_spec), None, notes, tgt, 0, arch=arch)
    if measure and seeds > 0:
        from sigprop.diagnose.probe import measure_rows

        try:
            diag.measured = measure_rows(diag, seeds=seeds, batch=batch, device=device, stream=stream)
            diag.seeds = seeds
        except TypeError as exc:  # a plain nn.Module sigprop.measure has no adapter for
            if tgt.model is None or hasattr(tgt.model, "config"):
                raise
            diag.notes.append(f"not measured: {exc}")
    return diag


def _seq_len(tgt: Target, seq_len: int | None) -> int:
    cfg = tgt.config
    if cfg is not None and getattr(cfg, "model_type", None) == "vit":
        n = (cfg.image_size // cfg.patch_size) ** 2 + 1
        if seq_len is not None and seq_len != n:
            raise ValueError(f"seq_len of a ViT is its patches + 1 = {n} (image_size/patch_size)²+1; got {seq_len}")
        return n
    if seq_len is not None:
        return seq_len
    pos = None
    if cfg is not None:
        for k in ("max_position_embeddings", "n_positions", "n_ctx"):
            v = getattr(cfg, k, None)
            if isinstance(v, int) and v >= 2:
                pos = v
                break
    return min(pos or DEFAULT_SEQ_LEN, DEFAULT_SEQ_LEN)


def _t5_bias_note(tgt: Target, arch: Any, eff: Effective, reasons: list[str], notes: list[str]) -> None:
    """T5's relative position bias: its within-row variance relative to β² ln T (content part)."""
    if arch is None or arch.name != "t5_encoder":
        return
    model = tgt.model
    if model is None:
        from sigprop.diagnose.formulas import t5_relative_bias_variance

        var = t5_relative_bias_variance(tgt.config)
    else:
        rel = getattr(layers_of(model, arch)[0].layer[0].SelfAttention, "relative_attention_bias", None)
        if rel is None:
            return
        var = Reader().ms(rel.weight)
    content = float(np.mean(eff.beta_unit)) ** 2
    ratio = var / content if content > 0 else math.inf
    text = (f"relative position bias: within-row logit variance {var:.3g}, {ratio:.1%} of the content part β² ln T = "
            f"{content:.3g}")
    reasons[:] = [r for r in reasons if not r.startswith("relative position bias")]
    if ratio > 0.02:
        reasons.append(text + " (left out of the theory)")
    else:
        notes.append(text + " (negligible, left out)")
