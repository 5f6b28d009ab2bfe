"""The checkpoint table: published values, offline configs, name lookup."""

import pytest

from sigprop.diagnose import checkpoints as ck

REQUIRED = [
    "bert-base-uncased", "bert-large-uncased", "roberta-base", "distilbert-base-uncased", "gpt2", "gpt2-medium",
    "gpt2-large", "gpt2-xl", "EleutherAI/pythia-70m", "EleutherAI/pythia-160m", "EleutherAI/pythia-410m",
    "EleutherAI/pythia-1b", "EleutherAI/pythia-1.4b", "EleutherAI/pythia-2.8b", "EleutherAI/pythia-6.9b",
    "EleutherAI/pythia-12b", "facebook/opt-125m", "facebook/opt-350m", "facebook/opt-1.3b", "facebook/opt-2.7b",
    "facebook/opt-6.7b", "meta-llama/Llama-2-7b-hf", "mistralai/Mistral-7B-v0.1", "t5-small", "t5-base",
    "google/vit-base-patch16-224", "answerdotai/ModernBERT-base",
]

#: a one-block, 64-wide version of each architecture (field names differ per model_type)
TINY = {
    "bert": dict(num_hidden_layers=1, hidden_size=64, num_attention_heads=4, intermediate_size=128),
    "roberta": dict(num_hidden_layers=1, hidden_size=64, num_attention_heads=4, intermediate_size=128),
    "distilbert": dict(n_layers=1, dim=64, n_heads=4, hidden_dim=128),
    "gpt2": dict(n_layer=1, n_embd=64, n_head=4, n_inner=128),
    "gpt_neox": dict(num_hidden_layers=1, hidden_size=64, num_attention_heads=4, intermediate_size=128),
    "opt": dict(num_hidden_layers=1, hidden_size=64, num_attention_heads=4, ffn_dim=128, word_embed_proj_dim=64),
    "llama": dict(num_hidden_layers=1, hidden_size=64, num_attention_heads=4, num_key_value_heads=4,
                  intermediate_size=128),
    "mistral": dict(num_hidden_layers=1, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                    intermediate_size=128),
    "t5": dict(num_layers=1, num_decoder_layers=1, d_model=64, num_heads=4, d_kv=16, d_ff=128),
    "vit": dict(num_hidden_layers=1, hidden_size=64, num_attention_heads=4, intermediate_size=128),
    "modernbert": dict(num_hidden_layers=1, hidden_size=64, num_attention_heads=4, intermediate_size=128),
}


def test_table_has_every_required_checkpoint():
    assert set(REQUIRED) <= set(ck.names())
    assert len(ck.names()) == len(set(n.lower() for n in ck.names()))


def test_published_values_spot_checks():
    assert ck.lookup("bert-base-uncased") == ("bert", ck.lookup("bert-base-uncased")[1])
    bert = ck.lookup("bert-base-uncased")[1]
    assert (bert["num_hidden_layers"], bert["hidden_size"], bert["num_attention_heads"]) == (12, 768, 12)
    xl = ck.lookup("gpt2-xl")[1]
    assert (xl["n_layer"], xl["n_embd"], xl["n_head"]) == (48, 1600, 25)
    mistral = ck.lookup("mistralai/Mistral-7B-v0.1")[1]
    assert (mistral["num_key_value_heads"], mistral["sliding_window"], mistral["intermediate_size"]) == (8, 4096, 14336)
    llama = ck.lookup("meta-llama/Llama-2-7b-hf")[1]
    assert (llama["hidden_size"], llama["num_hidden_layers"], llama["intermediate_size"]) == (4096, 32, 11008)
    assert ck.lookup("EleutherAI/pythia-12b")[1]["hidden_size"] == 5120
    assert ck.lookup("t5-small")[1]["initializer_factor"] == 1.0
    assert ck.lookup("facebook/opt-350m")[1]["word_embed_proj_dim"] == 512


def _width_heads(model_type, f):
    keys = {"gpt2": ("n_embd", "n_head"), "distilbert": ("dim", "n_heads"), "t5": ("d_model", "num_heads")}
    w, h = keys.get(model_type, ("hidden_size", "num_attention_heads"))
    return f[w], f[h]


@pytest.mark.parametrize("name", sorted(ck.names()))
def test_entries_are_consistent(name):
    """Catches typos in the table: heads divide the width, even rotary head dims, kv heads divide heads."""
    model_type, f = ck.lookup(name)
    d, h = _width_heads(model_type, f)
    assert d % h == 0 and (d // h) % 2 == 0
    assert h % f.get("num_key_value_heads", h) == 0
    if model_type == "t5":
        assert f["d_kv"] * h == d
    if model_type == "gpt_neox":
        assert f["intermediate_size"] == 4 * d and int(d // h * f["rotary_pct"]) % 2 == 0
    init = f.get("initializer_range", f.get("init_std", f.get("initializer_factor")))
    assert init in (0.02, 1.0)


def test_lookup_returns_a_copy():
    _, fields = ck.lookup("gpt2")
    fields["n_layer"] = 99
    assert ck.lookup("gpt2")[1]["n_layer"] == 12


@pytest.mark.parametrize("query, expected", [
    ("BERT-BASE-UNCASED", "bert-base-uncased"),
    ("pythia-70m", "EleutherAI/pythia-70m"),
    ("eleutherai/PYTHIA-1.4B", "EleutherAI/pythia-1.4b"),
    ("openai-community/gpt2", "gpt2"),
    ("google-bert/bert-large-uncased", "bert-large-uncased"),
    ("llama-2-7b-hf", "meta-llama/Llama-2-7b-hf"),
    ("ModernBERT-base", "answerdotai/ModernBERT-base"),
])
def test_lookup_variants(query, expected):
    assert ck.lookup(query) == ck.lookup(expected)


def test_unknown_name_lists_close_matches():
    with pytest.raises(ValueError, match=r"close matches: bert-base-(un)?cased, bert-base-(un)?cased"):
        ck.lookup("bert-base")
    with pytest.raises(ValueError, match="unknown checkpoint name"):
        ck.lookup("no-such-model-anywhere-xyz")
    with pytest.raises(ValueError, match="non-empty string"):
        ck.lookup("")


def test_structure():
    assert ck.structure("bert-base-uncased")["norm_position"] == "post"
    assert ck.structure("facebook/opt-350m")["norm_position"] == "post"
    assert ck.structure("facebook/opt-125m")["norm_position"] == "pre"
    neox = ck.structure("pythia-410m")
    assert (neox["block"], neox["rope_fraction"], neox["causal"]) == ("parallel", 0.25, True)
    assert ck.structure("meta-llama/Llama-2-7b-hf")["norm_type"] == "rmsnorm"
    assert ck.structure("answerdotai/ModernBERT-base")["rope_theta"] == 160000.0


transformers = pytest.importorskip("transformers")


@pytest.mark.parametrize("name", ck.names())
def test_every_entry_builds_offline_and_round_trips(name, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model_type, fields = ck.lookup(name)
    cfg = ck.config(name)
    assert cfg.model_type == model_type
    for key, value in fields.items():
        assert ck.config_value(cfg, key) == value, key


def test_overrides_and_rope_fields():
    cfg = ck.config("bert-large-uncased", num_hidden_layers=48)
    assert (cfg.num_hidden_layers, cfg.hidden_size) == (48, 1024)
    neox = ck.config("EleutherAI/pythia-70m")
    assert neox.rope_parameters["partial_rotary_factor"] == 0.25
    assert ck.config_value(neox, "rotary_emb_base") == 10000
    with pytest.raises(KeyError):
        ck.config_value(neox, "no_such_field")


@pytest.mark.parametrize("model_type", sorted(TINY))
def test_tiny_override_builds_a_model(model_type):
    torch = pytest.importorskip("torch")
    name = next(n for n in ck.names() if ck.lookup(n)[0] == model_type)
    cfg = ck.config(name, **TINY[model_type])
    torch.manual_seed(0)
    model = transformers.AutoModel.from_config(cfg)
    from sigprop.measure import hook_points

    blocks = hook_points(model).blocks
    assert len(blocks) == 1
    shapes = {tuple(p.shape) for p in blocks[0].parameters()}
    assert (64,) in shapes and any(128 in s for s in shapes)  # width d = 64 and MLP width 128 as overridden
    assert sum(p.numel() for p in model.parameters()) < 5_000_000  # published vocab × 64 + one small block
