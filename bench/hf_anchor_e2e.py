#!/usr/bin/env python3
"""The HF transformers anchor for the end-to-end bench (decode_bench), on the same checkpoint.

    python3 bench/hf_anchor_e2e.py --model /tmp/llama-3.1-8b-random --contexts 32768,131072 \
        --decode-tokens 128 --json /tmp/out/hf.json

For each context length: random token ids (seeded, in [0, 128000)); the prefill timed with a
device sync on both sides (best of --prefill-runs; one run past 64K tokens), logits for the last
position only; then greedy decode of N tokens with the KV cache, one model call per token, each
step timed after a sync (tok/s = N / total, and the median step); the peak GPU memory of the
length. Decode leaves out SDPA's cuDNN backend (see --decode-sdpa): with a growing cache it
rebuilds its graph on every step. Also the decode floor from memory bandwidth: the bytes one decode step must read (the
weights without embed_tokens, which is a gather, plus the KV cache of the context) over the
measured device copy bandwidth (2 * bytes / time of a 4 GiB copy).

Writes a JSON list, one object per length: context_tokens, hf_prefill_s, hf_decode_tok_s,
hf_decode_p50_s, hf_peak_gpu_bytes, copy_bw_bytes_s, floor_decode_tok_s (and a few more).
"""
import argparse
import json
import statistics
import sys
import time

import torch
import transformers
from torch.nn.attention import SDPBackend, sdpa_kernel
from transformers import AutoModelForCausalLM

MAX_RANDOM_ID = 128000  # below the Llama-3 special tokens


def sync():
    torch.cuda.synchronize()


def copy_bandwidth(gib=4, reps=5):
    """Device copy bandwidth in bytes/s (read + write), best of `reps`."""
    n = gib << 30
    x = torch.empty(n, dtype=torch.uint8, device="cuda")
    x.fill_(1)
    y = torch.empty_like(x)
    y.copy_(x)
    best = float("inf")
    for _ in range(reps):
        sync()
        t = time.perf_counter()
        y.copy_(x)
        sync()
        best = min(best, time.perf_counter() - t)
    del x, y
    torch.cuda.empty_cache()
    return 2 * n / best


def load_model(path):
    kwargs = {"attn_implementation": "sdpa"}
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16, device_map="cuda", **kwargs)
    except (TypeError, ValueError, ImportError) as e:  # older transformers, or no accelerate
        print(f"note: loading on the CPU first ({type(e).__name__}: {str(e).splitlines()[0][:100]})")
        model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.bfloat16, **kwargs).to("cuda")
    model.eval()
    return model


def new_cache(model, kind, max_len):
    if kind == "dynamic":
        return None  # the model makes a DynamicCache
    from transformers import StaticCache
    try:
        return StaticCache(config=model.config, max_cache_len=max_len)
    except TypeError:  # older signature
        return StaticCache(config=model.config, max_batch_size=1, max_cache_len=max_len, device="cuda",
                           dtype=torch.bfloat16)


def prefill(model, ids, cache):
    """One forward over the prompt; returns (logits of the last position [1, vocab], cache)."""
    try:
        out = model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1], out.past_key_values
    except TypeError:  # no logits_to_keep: run the body, then lm_head on the last hidden state
        out = model.model(input_ids=ids, past_key_values=cache, use_cache=True)
        return model.lm_head(out.last_hidden_state[:, -1]), out.past_key_values


BACKENDS = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
            "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}


def backends(spec):
    """sdpa_kernel's list for "flash,efficient,math"; all of them for "all"."""
    names = list(BACKENDS) if spec == "all" else [b.strip() for b in spec.split(",") if b.strip()]
    return [BACKENDS[b] for b in names]


def run_length(model, n, decode_tokens, runs, seed, cache_kind, decode_backends):
    g = torch.Generator().manual_seed(seed + n)
    ids = torch.randint(0, MAX_RANDOM_ID, (1, n), generator=g).to("cuda")
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    best = float("inf")
    for r in range(runs):
        cache = logits = None
        torch.cuda.empty_cache()
        cache = new_cache(model, cache_kind, n + decode_tokens)
        sync()
        t = time.perf_counter()
        logits, cache = prefill(model, ids, cache)
        sync()
        best = min(best, time.perf_counter() - t)
    step_s, cache = decode_greedy(model, logits, cache, decode_tokens, decode_backends)
    peak = torch.cuda.max_memory_allocated()
    del cache, logits
    torch.cuda.empty_cache()
    return best, step_s, peak


def decode_greedy(model, logits, cache, steps, decode_backends):
    """`steps` greedy decode steps from the prefill's last logits (every row of a batch at once),
    each timed after a device sync; returns (seconds of each step, the cache)."""
    step_s = []
    nxt = logits.argmax(-1, keepdim=True)
    with sdpa_kernel(decode_backends):
        for _ in range(steps):
            sync()
            t = time.perf_counter()
            out = model(input_ids=nxt, past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
            sync()
            step_s.append(time.perf_counter() - t)
            del out
    return step_s, cache


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="HF checkpoint folder")
    ap.add_argument("--contexts", default="32768,131072", help="comma-separated context lengths in tokens")
    ap.add_argument("--decode-tokens", type=int, default=128)
    ap.add_argument("--prefill-runs", type=int, default=2, help="best of this many (1 past 64K tokens)")
    ap.add_argument("--cache", choices=["dynamic", "static"], default="dynamic",
                    help="KV cache class: dynamic (HF's default, grows by concatenation) or static (preallocated)")
    ap.add_argument("--decode-sdpa",
                    help="SDPA backends allowed in decode, e.g. flash,efficient,math, or 'all' for torch's own "
                         "pick. Default: flash,efficient,math with the dynamic cache (torch picks cuDNN, which "
                         "builds a graph for each new KV length, i.e. on every step: 60 ms vs 21 ms a token for "
                         "8B at 32K on an H200); all with the static cache (fixed shapes, masked)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    contexts = [int(c) for c in args.contexts.split(",") if c.strip()]
    if args.decode_sdpa is None:
        args.decode_sdpa = "all" if args.cache == "static" else "flash,efficient,math"
    if not torch.cuda.is_available():
        sys.exit("no CUDA device")

    dev = torch.cuda.get_device_name()
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {dev}")
    bw = copy_bandwidth()
    print(f"device copy bandwidth: {bw / 1e9:.0f} GB/s (2 x 4 GiB / best time)")

    t = time.perf_counter()
    model = load_model(args.model)
    cfg = model.config
    print(f"loaded {args.model} in {time.perf_counter() - t:.1f} s")
    heads = cfg.num_attention_heads
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    kv_bytes_per_token = 2 * cfg.num_hidden_layers * kv_heads * head_dim * 2  # K and V, bf16
    weight_bytes = sum(p.numel() * p.element_size() for name, p in model.named_parameters()
                       if "embed_tokens" not in name)
    if getattr(cfg, "tie_word_embeddings", False):  # lm_head reads the (shared) embedding
        weight_bytes += cfg.vocab_size * cfg.hidden_size * 2
    print(f"decode reads {weight_bytes / 1e9:.2f} GB of weights (no embed_tokens) + "
          f"{kv_bytes_per_token / 1024:.0f} KiB of KV per context token")

    with torch.inference_mode():  # warm-up: kernels, cuBLAS handles, allocator
        decode_backends = backends(args.decode_sdpa)
        run_length(model, 512, 4, 1, args.seed, args.cache, decode_backends)

        results = []
        for n in contexts:
            runs = args.prefill_runs if n <= 65536 else 1
            try:
                prefill_s, step_s, peak = run_length(model, n, args.decode_tokens, runs, args.seed, args.cache,
                                                     decode_backends)
            except torch.cuda.OutOfMemoryError as e:
                print(f"context {n}: out of memory ({str(e).splitlines()[0][:120]})")
                results.append({"context_tokens": n, "error": "out of memory"})
                torch.cuda.empty_cache()
                continue
            floor_bytes = weight_bytes + kv_bytes_per_token * n
            r = {
                "context_tokens": n,
                "hf_prefill_s": prefill_s,
                "hf_prefill_tok_s": n / prefill_s,
                "hf_decode_tokens": len(step_s),
                "hf_decode_tok_s": len(step_s) / sum(step_s) if step_s else 0.0,
                "hf_decode_p50_s": statistics.median(step_s) if step_s else 0.0,
                "hf_peak_gpu_bytes": peak,
                "hf_cache": args.cache,
                "hf_decode_sdpa": args.decode_sdpa,
                "copy_bw_bytes_s": bw,
                "floor_bytes_per_token": floor_bytes,
                "floor_decode_tok_s": bw / floor_bytes,
                "device": dev,
            }
            results.append(r)
            print(f"context {n}: prefill {prefill_s:.3f} s ({n / prefill_s:.0f} tok/s, best of {runs}); "
                  f"decode {r['hf_decode_tok_s']:.1f} tok/s, p50 {r['hf_decode_p50_s'] * 1e3:.2f} ms "
                  f"({len(step_s)} tokens, {args.cache} cache); peak {peak / 2**30:.1f} GiB; "
                  f"bandwidth floor {r['floor_decode_tok_s']:.1f} tok/s ({floor_bytes / 1e9:.1f} GB per token)",
                  flush=True)

    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
            f.write("\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
