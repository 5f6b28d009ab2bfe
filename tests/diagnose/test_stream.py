"""Streaming one block at a time reproduces the full model measured with sigprop.measure."""

import copy
import math
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from sigprop.diagnose.stream import (  # noqa: E402
    STAT_KEYS,
    block_seed,
    init_streamed,
    random_input_ids,
    shell_seed,
    stream_measure,
)
from sigprop.measure import measure  # noqa: E402

T = transformers
SMALL = dict(hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=128, vocab_size=200)
IDS = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2)
CONFIGS = {
    "llama": lambda: T.LlamaConfig(**SMALL, num_key_value_heads=2),
    "mistral": lambda: T.MistralConfig(**SMALL, num_key_value_heads=2, sliding_window=8),
    "gpt2": lambda: T.GPT2Config(n_embd=64, n_layer=4, n_head=4, vocab_size=200),
    "gpt_neox": lambda: T.GPTNeoXConfig(**SMALL, rotary_pct=0.25),
    "bert": lambda: T.BertConfig(**SMALL),
    "roberta": lambda: T.RobertaConfig(**SMALL),
    "opt": lambda: T.OPTConfig(hidden_size=64, num_hidden_layers=4, num_attention_heads=4, ffn_dim=128,
                               word_embed_proj_dim=64, vocab_size=200),
    "distilbert": lambda: T.DistilBertConfig(dim=64, n_layers=4, n_heads=4, hidden_dim=128, vocab_size=200),
    "t5": lambda: T.T5Config(d_model=64, d_kv=16, d_ff=128, num_layers=4, num_heads=4, vocab_size=200,
                             feed_forward_proj="gated-gelu"),
    "modernbert": lambda: T.ModernBertConfig(**SMALL, global_attn_every_n_layers=2, local_attention=8, **IDS,
                                             cls_token_id=1, sep_token_id=2),
}
SEQ, BATCH, LAST, SEED0 = 16, 2, 4, 3


def full_model(name, cfg):
    cfg = copy.deepcopy(cfg)
    if name == "t5":
        return T.T5EncoderModel._from_config(cfg, attn_implementation="eager").eval()
    return T.AutoModel.from_config(cfg, attn_implementation="eager").eval()


REQUIRED = ("llama", "mistral", "gpt2", "gpt_neox", "bert")


@pytest.mark.parametrize("name", [n if n in REQUIRED else pytest.param(n, marks=pytest.mark.slow)
                                  for n in sorted(CONFIGS)])
def test_stream_equals_full_model(name):
    """Oracle: the full model with the same weights (init_streamed) and inputs, probed by sigprop.measure."""
    cfg = CONFIGS[name]()
    before = cfg.to_dict()
    st = stream_measure(cfg, seq_len=SEQ, seeds=2, batch=BATCH, last_k=LAST, seed0=SEED0)
    assert cfg.to_dict() == before  # the caller's config is not modified
    assert st["meta"]["n_blocks"] == 4 and st["layer"] == [0, 1, 2, 3, 4]
    for s in range(2):
        model = init_streamed(full_model(name, cfg), seed=SEED0 + s)
        ids = random_input_ids(cfg, seq_len=SEQ, batch=BATCH, seed=SEED0 + s)
        assert st["meta"]["causal"] is measure(model, input_ids=ids).meta["causal"]
        for suffix, last_k in (("", None), ("_last", LAST)):
            m = measure(model, input_ids=ids, last_k=last_k)
            for key in STAT_KEYS:
                want, got = m[key], st["per_seed"][s][key + suffix]
                assert len(got) == 5
                for a, b in zip(want, got, strict=True):
                    assert (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-5, (key + suffix, want, got)
    # reported columns are the seed means
    for key in ("cosine", "attn_entropy_norm"):
        mean = [(a + b) / 2 for a, b in zip(st["per_seed"][0][key], st["per_seed"][1][key], strict=True)]
        assert st[key][1:] == pytest.approx(mean[1:], abs=1e-12)
    assert math.isnan(st["attn_entropy_norm"][0])


@pytest.mark.parametrize("name", ["llama", "gpt2", "bert"])
def test_init_streamed_has_the_models_own_init_distribution(name):
    """Per tensor: same std as the model's default init (within sampling error), exact zeros/ones where the
    default has them; GPT-2's 1/√(2L) residual projections included."""
    cfg = CONFIGS[name]()
    torch.manual_seed(0)
    default = full_model(name, cfg)
    streamed = init_streamed(full_model(name, cfg), seed=5)
    ref = dict(default.named_parameters())
    for key, p in streamed.named_parameters():
        q = ref[key]
        if torch.all(q == q.flatten()[0]):
            assert torch.equal(p, q), key  # constants: zero biases, unit norm weights
        else:
            n = p.numel()
            assert abs(p.std().item() / q.std().item() - 1) < 6 * math.sqrt(2 / n) + 1e-3, key
            assert not torch.equal(p, q)
    if name == "gpt2":
        c_proj = streamed.h[0].attn.c_proj.weight.std().item()
        assert c_proj == pytest.approx(0.02 / math.sqrt(2 * 4), rel=0.05)


def test_blocks_are_seeded_independently():
    cfg = CONFIGS["llama"]()
    full = stream_measure(cfg, seq_len=SEQ, seed0=1)
    head = stream_measure(cfg, seq_len=SEQ, seed0=1, max_layers=2)
    assert head["layer"] == [0, 1, 2] and head["meta"]["measured_blocks"] == 2
    for key in ("cosine", "q", "attn_entropy_norm"):
        assert head[key][1:] == pytest.approx(full[key][1:3], abs=1e-12)
    other = stream_measure(cfg, seq_len=SEQ, seed0=2, max_layers=2)
    assert other["cosine"][1] != head["cosine"][1]
    assert len({shell_seed(1), block_seed(1, 0), block_seed(1, 1), shell_seed(2), block_seed(2, 0)}) == 5


def test_progress_called_once_per_block_and_seed():
    calls = []
    stream_measure(CONFIGS["gpt2"](), seq_len=8, seeds=2, progress=calls.append)
    assert len(calls) == 8 and calls[0] == "seed 0 block 1"

    class Bar:
        n = 0

        def advance(self, status=""):
            Bar.n += 1

    stream_measure(CONFIGS["gpt2"](), seq_len=8, progress=Bar())
    assert Bar.n == 4


def test_bfloat16_close_to_float32():
    cfg = CONFIGS["llama"]()
    a = stream_measure(cfg, seq_len=32, seed0=4)
    b = stream_measure(cfg, seq_len=32, seed0=4, dtype=torch.bfloat16)
    assert b["meta"]["dtype"] == "bfloat16"
    assert b["cosine"] == pytest.approx(a["cosine"], abs=0.03)
    assert b["attn_entropy_norm"][1:] == pytest.approx(a["attn_entropy_norm"][1:], abs=0.03)


def test_checkpoint_name_and_given_input_ids():
    ids = torch.randint(0, 50257, (1, 8))
    r = stream_measure("gpt2", seq_len=8, input_ids=ids, max_layers=1)
    assert r["meta"]["model_type"] == "gpt2" and r["meta"]["n_blocks"] == 12 and len(r["layer"]) == 2


@pytest.mark.parametrize("kwargs, match", [
    (dict(seq_len=1), "seq_len"),
    (dict(seq_len=8, seeds=0), "seeds"),
    (dict(seq_len=8, batch=0), "batch"),
    (dict(seq_len=8, last_k=0), "last_k"),
    (dict(seq_len=8, max_layers=0), "max_layers"),
    (dict(seq_len=8, dtype=torch.int64), "dtype"),
    (dict(seq_len=8, device="tpu-nonsense"), "device"),
    (dict(seq_len=8, input_ids=torch.zeros(2, 8, dtype=torch.long)), "input_ids"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        stream_measure(CONFIGS["gpt2"](), **kwargs)


def test_bad_config_and_cuda_without_device():
    with pytest.raises(ValueError, match="config"):
        stream_measure({"model_type": "llama"}, seq_len=8)
    with pytest.raises(ValueError, match="unknown checkpoint"):
        stream_measure("no-such-checkpoint-xyz", seq_len=8)
    with pytest.raises(ValueError, match="vocab_size"):
        stream_measure(T.ViTConfig(hidden_size=64, num_hidden_layers=1, num_attention_heads=4), seq_len=8)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="cuda"):
            stream_measure(CONFIGS["gpt2"](), seq_len=8, device="cuda")


def _streamed_peak_mb(max_layers):
    """Peak memory of a fresh process streaming a 3.2 GB (float32) Llama shape: 16 blocks of 193 MiB."""
    code = (
        "import torch, transformers as T\n"
        "from sigprop.diagnose.stream import stream_measure\n"
        "cfg = T.LlamaConfig(hidden_size=2048, num_hidden_layers=16, num_attention_heads=16,"
        " intermediate_size=5504, vocab_size=1000)\n"
        f"r = stream_measure(cfg, seq_len=64, max_layers={max_layers})\n"
        "print(r['meta']['peak_rss_mb'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_peak_memory_is_one_block_not_the_model():
    """Streaming holds one block at a time: the peak after all 16 blocks is the peak after the first one.

    Both runs build the same meta model, imports and shell; the 16-block run materialises, runs and frees 15
    more blocks. Holding them would add 15 × 193 MiB = 2.9 GB; freeing each before the next leaves only
    allocator slack, bounded here by half a block. The absolute bound (half the model) keeps its old form.
    """
    block_mb = (4 * 2048**2 + 3 * 2048 * 5504) * 4 / 2**20  # q, k, v, o + gate, up, down: 193 MiB
    first, full = _streamed_peak_mb(1), _streamed_peak_mb(None)
    assert full - first < block_mb / 2, (first, full)
    assert full < 16 * block_mb / 2


def test_peak_rss_is_this_process_not_its_parent():
    """``peak_rss_mb`` in a fresh interpreter started by a parent holding 600 MB more: the child's own peak.

    ``getrusage``'s ``ru_maxrss`` reports the parent's peak there (Linux keeps it over ``execve``); that made the
    memory test above read a test runner's 1.9 GB instead of the streaming's ~0.6 GB.
    """
    if not sys.platform.startswith("linux"):
        pytest.skip("VmHWM is Linux's")
    ballast = bytearray(600 * 2**20)
    ballast[::4096] = b"\1" * len(ballast[::4096])  # touch every page: resident
    code = "from sigprop.diagnose.stream import peak_rss_mb\nprint(peak_rss_mb())\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    child = float(out.stdout.strip().splitlines()[-1])
    del ballast
    assert 0 < child < 550, child  # torch + transformers imports: ~0.3 GB; the parent: > 600 MB


def test_extra_statistics_per_block():
    """``extra`` sees block ℓ's probabilities and its input: its input's q is the q column of layer ℓ − 1, and a
    within-row variance of ln A equals the same statistic of the full model's attentions."""
    cfg = CONFIGS["gpt_neox"]()

    def lnA_var(A, causal):
        logA = A.double().clamp_min(1e-300).log()
        keep = torch.ones(A.shape[-2:], dtype=torch.bool).tril() if causal else torch.ones(A.shape[-2:], dtype=torch.bool)
        logA = logA.masked_fill(~keep, float("nan"))
        rows = logA[..., 1:, :]  # rows with ≥ 2 keys
        mean = rows.nanmean(-1, keepdim=True)
        return ((rows - mean) ** 2).nansum(-1) / (keep[1:].sum(-1) - 1)

    def extra(A, x, causal):
        return {"q_in": (x.double() ** 2).mean().item(), "lnA_var": lnA_var(A, causal).mean().item(),
                "row_sum": A.double().sum(-1).mean().item()}

    st = stream_measure(cfg, seq_len=SEQ, batch=BATCH, seed0=SEED0, extra=extra)
    assert math.isnan(st["q_in"][0]) and st["row_sum"][1:] == pytest.approx([1.0] * 4, abs=1e-6)
    assert st["q_in"][1:] == pytest.approx(st["q"][:-1], rel=1e-6)
    model = init_streamed(full_model("gpt_neox", cfg), seed=SEED0)
    m = measure(model, input_ids=random_input_ids(cfg, seq_len=SEQ, batch=BATCH, seed=SEED0))
    want = [lnA_var(A, True).mean().item() for A in m.output.attentions]
    assert st["lnA_var"][1:] == pytest.approx(want, rel=1e-6)
