"""`sigprop diagnose`: the JSON contract, offline targets, support levels, and bad targets (exit 2, one line)."""

import json
import math

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from sigprop.cli import main  # noqa: E402
from sigprop.diagnose import diagnose  # noqa: E402

KEYS = {"model_type", "support", "reasons", "spec", "label", "verdict", "recommendation", "predicted", "measured",
        "max_abs_err_rho", "max_abs_err_entropy"}
SMALL = ["--set", "hidden_size=64", "--set", "num_attention_heads=2", "--set", "intermediate_size=128",
         "--set", "num_hidden_layers=3", "--set", "vocab_size=500"]


def run(args, capsys):
    rc = main(args)
    out, err = capsys.readouterr()
    return rc, out, err


def test_json_contract_with_fix_and_saved_folder(tmp_path, capsys):
    """A tiny BERT through the CLI with --fix --save-fixed: every contract key, per-layer rows with layer/rho/
    attn_entropy_norm, a `fixed` block of the same form, the PNGs, and the saved folder diagnosed again."""
    saved = tmp_path / "fixed"
    rc, out, err = run(["diagnose", "bert", *SMALL, "-T", "32", "--seeds", "1", "--fix", "--save-fixed", str(saved),
                        "--out", str(tmp_path / "o"), "--format", "json"], capsys)
    assert rc == 0, err
    js = json.loads(out)
    assert KEYS <= set(js)
    assert js["model_type"] == "bert" and js["support"] == "exact" and js["label"] in ("trainable", "rank_collapse", "entropy_collapse")
    assert set(js["recommendation"]) >= {"beta", "qk_std", "alpha_sa", "alpha_mlp"}
    for block in ("predicted", "measured"):
        assert [r["layer"] for r in js[block]] == [0, 1, 2, 3]
        assert all({"rho", "attn_entropy_norm"} <= set(r) for r in js[block])
    assert math.isfinite(js["max_abs_err_rho"]) and math.isfinite(js["max_abs_err_entropy"])
    assert KEYS <= set(js["fixed"]) and len(js["fixed"]["measured"]) == 4
    assert (tmp_path / "o" / "diagram.png").stat().st_size > 1000 and (tmp_path / "o" / "overlay.png").exists()
    assert json.loads((tmp_path / "o" / "diagnose.json").read_text())["label"] == js["label"]
    back = diagnose(str(saved), measure=False, seq_len=32)
    assert back.spec.beta == pytest.approx(js["recommendation"]["beta"], rel=0.1)


def test_checkpoint_name_no_measure_offline(tmp_path, capsys, monkeypatch):
    """With the hub unreachable (offline mode), a table name works and needs no weights."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rc, out, err = run(["diagnose", "bert-base-uncased", "--no-measure", "--out", str(tmp_path), "--format", "json"], capsys)
    assert rc == 0, err
    js = json.loads(out)
    assert js["measured"] is None and js["spec"]["beta"] == pytest.approx(0.123, abs=5e-4)


def test_config_json_target_and_set(tmp_path, capsys):
    """A save_pretrained config folder (no weights) and --set overrides (BERT-large at 48 layers)."""
    transformers.BertConfig(hidden_size=1024, num_attention_heads=16, intermediate_size=4096).save_pretrained(tmp_path / "cfg")
    rc, out, err = run(["diagnose", str(tmp_path / "cfg" / "config.json"), "--set", "num_hidden_layers=48",
                        "--no-measure", "--out", str(tmp_path / "o"), "--format", "json"], capsys)
    assert rc == 0, err
    js = json.loads(out)
    assert js["spec"]["depth"] == 48 and js["spec"]["width"] == 1024


@pytest.mark.parametrize("args, words", [
    (["diagnose", "no-such-model-xyz", "--no-measure"], "unknown"),
    (["diagnose", "/nonexistent/folder", "--no-measure"], "does not exist"),
    (["diagnose", "bert", "--set", "oops", "--no-measure"], "key=value"),
    (["diagnose", "bert", "--save-fixed", "/tmp/x"], "--fix"),
])
def test_bad_targets_exit_2_one_line(args, words, capsys, tmp_path):
    rc, out, err = run([*args, "--out", str(tmp_path)], capsys)
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and words in err


def test_unreadable_folder_and_model_without_attention(tmp_path, capsys):
    """A folder without a readable config.json, and a model with no attention (ResNet): exit 2, one line."""
    (tmp_path / "empty").mkdir()
    rc, _, err = run(["diagnose", str(tmp_path / "empty"), "--no-measure", "--out", str(tmp_path / "o")], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "config.json" in err
    transformers.ResNetConfig().save_pretrained(tmp_path / "resnet")
    rc, _, err = run(["diagnose", str(tmp_path / "resnet"), "--no-measure", "--out", str(tmp_path / "o")], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "attention" in err
    with pytest.raises(ValueError, match="attention"):
        diagnose(torch.nn.Sequential(torch.nn.Linear(4, 4)), measure=False)


def test_unsupported_is_a_diagnosis_not_a_crash():
    """Mixture of experts and cross-attention: support 'unsupported' with why, no spec."""
    moe = diagnose(transformers.MixtralConfig(hidden_size=64, num_attention_heads=2, num_key_value_heads=1,
                                              intermediate_size=128, num_hidden_layers=2), measure=False)
    assert moe.support == "unsupported" and any("mixture of experts" in r for r in moe.reasons) and moe.spec is None
    bart = diagnose(transformers.BartConfig(d_model=64, encoder_layers=1, decoder_layers=1), measure=False)
    assert bart.support == "unsupported" and any("cross-attention" in r for r in bart.reasons)
    assert bart.to_dict()["spec"] is None


def test_single_wide_head_is_entropy_collapse():
    """LlamaConfig(hidden_size=16384, num_attention_heads=1) at T = 4096: β = σ² d / √ln T ≈ 2.27 > β_c."""
    d = diagnose(transformers.LlamaConfig(hidden_size=16384, num_attention_heads=1, num_key_value_heads=1,
                                          intermediate_size=1024, num_hidden_layers=1), seq_len=4096, measure=False)
    assert d.spec.beta == pytest.approx(0.02**2 * 16384 / math.sqrt(math.log(4096)), rel=1e-9)
    assert d.spec.beta == pytest.approx(2.27, abs=0.005)
    assert d.label == "entropy_collapse"


@pytest.mark.parametrize("flag", [None, "--stream", "--no-stream"])
def test_stream_switch(flag, tmp_path, capsys, monkeypatch):
    """`--stream/--no-stream`: with the size threshold lowered so that a tiny BERT counts as large, the
    default streams (rows marked `stream`; the fixed model is theory only, with a note naming --no-stream),
    `--no-stream` builds whole models and measures the fixed one too, `--stream` streams regardless."""
    import sigprop.diagnose.core as core

    monkeypatch.setattr(core, "STREAM_BYTES", 1)
    args = ["diagnose", "bert", *SMALL, "-T", "32", "--seeds", "1", "--fix", "--out", str(tmp_path), "--format", "json"]
    rc, out, err = run(args + ([flag] if flag else []), capsys)
    assert rc == 0, err
    js = json.loads(out)
    streamed = flag != "--no-stream"
    assert ("stream" in js["measured"][0]) == streamed
    if streamed:
        assert js["fixed"]["measured"] is None and any("--no-stream" in n for n in js["fixed"]["notes"])
    else:
        assert [r["layer"] for r in js["fixed"]["measured"]] == [0, 1, 2, 3] and not js["fixed"]["notes"]
