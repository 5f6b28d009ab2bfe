"""The light config view (theory-only diagnosis without transformers/torch) against the real config classes.

Oracle: ``transformers``' own config classes (``AutoConfig.for_model``). Every field the light view holds
must equal the real config's, every field a diagnosis looks up and the light view lacks must be absent
from the real config too, and a diagnosis through either must be the same — family by family, for every
checkpoint in the table, with depth and field overrides.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")
from transformers import AutoConfig  # noqa: E402

from sigprop.diagnose import checkpoints, core  # noqa: E402
from sigprop.diagnose import resolve as resolve_mod  # noqa: E402
from sigprop.diagnose.light import ALIASES, DEFAULTS, LightConfig, light_config  # noqa: E402
from sigprop.diagnose.resolve import full_config, resolve  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
FAMILIES = sorted(DEFAULTS)


def _assert_fields_match(light: LightConfig, real, where: str) -> None:
    assert light.model_type == real.model_type
    for key, value in light.fields().items():
        assert hasattr(real, key), f"{where}: the light view has {key!r}, the real config does not"
        assert getattr(real, key) == value, f"{where}: {key} light {value!r} vs real {getattr(real, key)!r}"


@pytest.mark.parametrize("model_type", FAMILIES)
def test_defaults_are_the_config_class_defaults(model_type):
    light = light_config(model_type, {})
    assert light is not None
    real = AutoConfig.for_model(model_type)
    _assert_fields_match(light, real, model_type)
    assert ALIASES.get(model_type, {}) == dict(type(real).attribute_map)
    for alias in ALIASES.get(model_type, {}):
        assert getattr(light, alias) == getattr(real, alias)


@pytest.mark.parametrize("name", checkpoints.names())
def test_every_checkpoint_light_view_equals_its_transformers_config(name):
    light = resolve(name, light=True)
    real = resolve(name)
    assert isinstance(light.config, LightConfig), f"{name}: the table entry should have an exact light view"
    assert (light.name, light.source) == (real.name, real.source)
    _assert_fields_match(light.config, real.config, name)
    _assert_fields_match(light.config, full_config(light.config), name + " (full_config)")


OVERRIDES = [
    ("bert-large-uncased", {"num_hidden_layers": 48}, None),
    ("gpt2", {}, 5),
    ("gpt2-medium", {"n_inner": 2048, "scale_attn_weights": True}, None),
    ("answerdotai/ModernBERT-base", {}, 7),
    ("answerdotai/ModernBERT-base", {"num_hidden_layers": 5, "global_attn_every_n_layers": 2}, None),
    ("t5-small", {"feed_forward_proj": "gated-gelu"}, 3),
    ("EleutherAI/pythia-70m", {"rotary_pct": 0.5, "rotary_emb_base": 500}, None),
    ("mistralai/Mistral-7B-v0.1", {"sliding_window": 64, "num_key_value_heads": 4}, 2),
    ("llama", {"hidden_size": 512, "num_attention_heads": 4, "head_dim": 64}, 3),
    ("facebook/opt-125m", {"do_layer_norm_before": False}, None),
    ("distilbert", {"n_layers": 2}, None),
    ("roberta", {"position_embedding_type": "relative_key"}, 2),
    ("t5", {}, 2),
]


@pytest.mark.parametrize("name,overrides,depth", OVERRIDES)
def test_overrides_and_depth_match(name, overrides, depth):
    light = resolve(name, overrides, depth, light=True)
    assert isinstance(light.config, LightConfig)
    _assert_fields_match(light.config, resolve(name, overrides, depth).config, f"{name} {overrides} depth={depth}")


@pytest.mark.parametrize("name,overrides", [
    ("bert-base-uncased", {"vocab_sizee": 3}),  # a field the view does not model
    ("bert-base-uncased", {"hidden_size": "wide"}),  # wrong type: transformers' validation must speak
    ("bert-base-uncased", {"hidden_size": 770}),  # not divisible by the 12 heads
    ("EleutherAI/pythia-70m", {"rope_parameters": {"rope_theta": 1.0}}),
    ("answerdotai/ModernBERT-base", {"sliding_window": 32}),  # a property setter in transformers
    ("qwen2", {}),  # a family without a light view
])
def test_anything_not_modelled_falls_back_to_transformers(name, overrides):
    try:
        resolve(name, overrides)
    except Exception as exc:  # transformers rejects it: so must the light path, with the same error
        with pytest.raises(type(exc)):
            resolve(name, overrides, light=True)
        return
    assert not isinstance(resolve(name, overrides, light=True).config, LightConfig)


def _force_full(monkeypatch):
    real_resolve = resolve_mod.resolve
    monkeypatch.setattr(core, "resolve", lambda *a, **k: real_resolve(*a, **{**k, "light": False}))


def _one_per_family():
    seen, out = set(), []
    for name in checkpoints.names():
        mt = checkpoints.lookup(name)[0]
        if mt not in seen:
            seen.add(mt)
            out.append(name)
    return out + ["facebook/opt-350m", "llama"]  # opt-350m: no closed form, the light view is upgraded


@pytest.mark.parametrize("name", _one_per_family())
def test_diagnosis_through_light_view_equals_through_transformers(name, monkeypatch):
    misses: set[str] = set()
    original = LightConfig.__getattr__

    def recording(self, key):
        try:
            return original(self, key)
        except AttributeError:
            misses.add(key)
            raise

    monkeypatch.setattr(LightConfig, "__getattr__", recording)
    T = None if "vit" in name else 64  # a ViT's T is its patches + 1
    fast = core.diagnose(name, depth=2, measure=False, report_grid=3, seq_len=T).to_dict()
    real_cfg = resolve(name, depth=2).config
    for key in misses:  # a field the diagnosis looked up that the light view lacks: the real one lacks it too
        assert not hasattr(real_cfg, key), f"{name}: light view misses {key!r} = {getattr(real_cfg, key)!r}"
    _force_full(monkeypatch)
    slow = core.diagnose(name, depth=2, measure=False, report_grid=3, seq_len=T).to_dict()
    assert json.dumps(fast, sort_keys=True) == json.dumps(slow, sort_keys=True)


_PROBE = """
import sys
from sigprop.cli import main
sys.argv = ["sigprop", "diagnose", *{args!r}, "--no-measure", "--out", {out!r}, "--format", "json"]
try:
    main()
except SystemExit as e:
    assert not e.code, e.code
print("MODULES", sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers")))
"""


@pytest.mark.parametrize("args", [["bert-base-uncased"], ["meta-llama/Llama-2-7b-hf", "--depth", "2"],
                                  ["llama", "--set", "num_hidden_layers=2"]])
def test_no_measure_on_a_table_name_imports_neither_torch_nor_transformers(args, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    code = _PROBE.format(args=args, out=str(tmp_path))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("MODULES")][-1]
    assert line == "MODULES []", line
    payload = json.loads((tmp_path / "diagnose.json").read_text())
    assert payload["spec"]["depth"] >= 1 and payload["label"]


def test_no_measure_fix_saves_a_model_built_from_the_full_config(tmp_path, capsys):
    """--no-measure --fix --save-fixed: the light view is turned into the transformers config to build and save
    the fixed model; the saved folder reloads and is diagnosed at the recommended β."""
    from sigprop.cli import main

    saved = tmp_path / "fixed"
    args = ["diagnose", "bert", "--set", "hidden_size=64", "--set", "num_attention_heads=2", "--set",
            "intermediate_size=128", "--depth", "2", "-T", "32", "--no-measure", "--fix", "--save-fixed", str(saved),
            "--out", str(tmp_path / "o"), "--format", "json"]
    assert main(args) == 0, capsys.readouterr().err
    js = json.loads(capsys.readouterr().out)
    assert js["fixed"]["saved_to"] == str(saved) and js["measured"] is None
    back = core.diagnose(str(saved), measure=False, seq_len=32)
    assert back.spec.depth == 2 and back.spec.width == 64
    assert back.spec.beta == pytest.approx(js["recommendation"]["beta"], rel=0.1)  # a 64 × 64 W_Q, W_K sample
