"""HuggingFace models built with the library defaults (sdpa attention): probes must see the attention.

Regression: measure() returned NaN attention statistics for default GPT-2 / BERT, because sdpa returns no
probabilities; CollapseMonitor therefore missed an entropy collapse that eager attention showed.
"""

import math

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from sigprop.measure import measure  # noqa: E402


def _pair(kind: str, **kw):
    """The same weights built twice: with the library default attention and with eager attention."""
    if kind == "gpt2":
        cfg = transformers.GPT2Config(n_layer=4, n_embd=128, n_head=2, **kw)
        cls = transformers.GPT2Model
    else:
        cfg = transformers.BertConfig(num_hidden_layers=3, hidden_size=64, num_attention_heads=2,
                                      intermediate_size=128, **kw)
        cls = transformers.BertModel
    torch.manual_seed(0)
    default = cls(cfg).eval()
    eager_cfg = cfg.__class__.from_dict(cfg.to_dict())
    eager_cfg._attn_implementation = "eager"
    eager = cls(eager_cfg).eval()
    eager.load_state_dict(default.state_dict())
    return default, eager


@pytest.mark.parametrize("kind", ["gpt2", "bert"])
def test_default_attention_gives_finite_stats_equal_to_eager(kind):
    default, eager = _pair(kind)
    before = default.config._attn_implementation
    assert before != "eager"  # the library default (sdpa) is what users get
    ids = torch.randint(0, 1000, (2, 64), generator=torch.Generator().manual_seed(1))
    m_def, m_eag = measure(default, input_ids=ids), measure(eager, input_ids=ids)
    assert default.config._attn_implementation == before  # restored
    for key in ("attn_entropy", "attn_entropy_norm", "attn_y2"):
        got, want = m_def[key][1:], m_eag[key][1:]
        assert all(math.isfinite(v) for v in got), (key, got)
        assert got == pytest.approx(want, abs=1e-5), key
    assert m_def.meta["causal"] is (kind == "gpt2")


def test_collapse_monitor_sees_entropy_collapse_under_default_attention():
    from sigprop.monitor import probe

    default, eager = _pair("bert", initializer_range=2.0)
    ids = torch.randint(0, 1000, (2, 64), generator=torch.Generator().manual_seed(2))
    got, want = probe(default, {"input_ids": ids}), probe(eager, {"input_ids": ids})
    assert None not in got["attn_entropy_norm"]
    assert got["attn_entropy_norm"] == pytest.approx(want["attn_entropy_norm"], abs=1e-5)
    assert min(got["attn_entropy_norm"]) < 0.01  # entropy collapse in layer 1, seen through sdpa
