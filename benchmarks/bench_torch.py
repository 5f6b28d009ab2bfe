"""Forward time of sigprop's TransformerStack against HuggingFace ``BertModel`` of the same size.

Default: 60 layers, d = 512, T = 512, one head, intermediate 512, batch 1, ``eval()``, ``no_grad``, CPU.
``--arch llama`` times the twin of a Llama-like spec (pre-RMSNorm, SwiGLU, RoPE, grouped-query, causal;
``--heads`` heads, half as many key/value heads) against HF ``LlamaModel`` of the same size instead.
Both models are timed in the same run (interleaved repeats after warm-up); prints median times and the
ratio ours / HF. Our stack is run on its default explicit-softmax path (the one probes see), on its
optional fused path (``attn.fast = True``), and under ``sigprop.measure`` (probes on). HF runs with its default
attention implementation ("sdpa") and with "eager".

    python benchmarks/bench_torch.py [--layers 60] [--width 512] [--seq-len 512] [--repeats 5] [--threads N]
                                     [--arch bert|llama] [--heads H]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def _time(fn, repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=60)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--arch", choices=("bert", "llama"), default="bert", help="spec and HF model compared")
    ap.add_argument("--heads", type=int, default=None, help="attention heads (default: 1 for bert, 8 for llama)")
    ap.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)"
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from sigprop.measure import measure
    from sigprop.nn import TransformerStack

    L, d, T, B = args.layers, args.width, args.seq_len, args.batch
    spec, hf, hf_name = _models(args.arch, L, d, T, args.heads)
    ours = TransformerStack(spec, vocab_size=2000, max_position=T, seed=0).eval()
    ids = torch.randint(0, 2000, (B, T), generator=torch.Generator().manual_seed(0))

    def run_ours_explicit():  # the default path
        with torch.no_grad():
            ours(input_ids=ids)

    def run_ours():
        for blk in ours.blocks:
            blk.attn.fast = True
        try:
            with torch.no_grad():
                ours(input_ids=ids)
        finally:
            for blk in ours.blocks:
                blk.attn.fast = False

    def run_measure():
        measure(ours, input_ids=ids)

    def run_hf(impl):
        def f():
            with torch.no_grad():
                hf[impl](input_ids=ids)

        return f

    cases = {
        "sigprop TransformerStack (explicit softmax)": run_ours_explicit,
        "sigprop TransformerStack (fused sdpa path)": run_ours,
        "sigprop measure() (probes on, all stats)": run_measure,
        f"HF {hf_name} (sdpa)": run_hf("sdpa"),
        f"HF {hf_name} (eager)": run_hf("eager"),
    }
    for fn in cases.values():  # warm-up all first
        for _ in range(args.warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.repeats):  # interleave so drifts hit every case alike
        for k, fn in cases.items():
            times[k] += _time(fn, 1, 0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"forward, CPU, torch {torch.__version__}, threads={torch.get_num_threads()}, "
        f"L={L} d={d} T={T} batch={B} {args.arch} heads={spec.heads}, median of {args.repeats} after {args.warmup} warm-up"
    )
    width = max(map(len, med))
    for k, v in med.items():
        print(f"  {k:<{width}}  {v * 1e3:9.1f} ms   (min {min(times[k]) * 1e3:.1f})")
    ref = med[f"HF {hf_name} (sdpa)"]
    print(
        f"ratio ours (default) / HF (default sdpa): {med['sigprop TransformerStack (explicit softmax)'] / ref:.3f}"
    )
    print(
        f"ratio ours (fused)   / HF (sdpa):         {med['sigprop TransformerStack (fused sdpa path)'] / ref:.3f}"
    )
    print(
        f"ratio ours (default) / HF (eager):        {med['sigprop TransformerStack (explicit softmax)'] / med[f'HF {hf_name} (eager)']:.3f}"
    )
    print(
        f"ratio measure() / HF (sdpa) forward:      {med['sigprop measure() (probes on, all stats)'] / ref:.3f}"
    )


def _models(arch: str, L: int, d: int, T: int, heads: int | None):
    """(spec of the twin, {"sdpa": HF model, "eager": HF model}, HF class name) of the same size."""
    import transformers as tf

    from sigprop import Spec

    if arch == "bert":
        H = heads or 1
        spec = Spec(depth=L, width=d, heads=H, seq_len=T, mlp_ratio=1.0, norm="post", beta=1.0)
        make = lambda impl: tf.BertModel(tf.BertConfig(  # noqa: E731
            vocab_size=2000, hidden_size=d, num_hidden_layers=L, num_attention_heads=H, intermediate_size=d,
            max_position_embeddings=T, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
            attn_implementation=impl), add_pooling_layer=False)
        name = "BertModel"
    else:
        H = heads or 8
        kv = max(1, H // 2)
        hidden = round(2.6875 * d)
        spec = Spec(depth=L, width=d, heads=H, kv_heads=kv, seq_len=T, mlp_ratio=hidden / d, norm="pre",
                    norm_type="rmsnorm", activation="swiglu", rope_fraction=1.0, causal=True, beta=0.05, sigma_b2=0.0)
        make = lambda impl: tf.LlamaModel(tf.LlamaConfig(  # noqa: E731
            vocab_size=2000, hidden_size=d, num_hidden_layers=L, num_attention_heads=H, num_key_value_heads=kv,
            intermediate_size=hidden, max_position_embeddings=T, rms_norm_eps=1e-6, attn_implementation=impl))
        name = "LlamaModel"
    return spec, {impl: make(impl).eval() for impl in ("sdpa", "eager")}, name


if __name__ == "__main__":
    main()
