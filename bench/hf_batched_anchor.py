#!/usr/bin/env python3
"""HF transformers' batched generation: the anchor for bench/concurrency_bench.

    python3 bench/hf_batched_anchor.py --model /tmp/llama-3.1-8b-random --batches 1,4,16,64 \
        --context 8192 --new-tokens 128 --json /tmp/out/hf_batched.json

Per batch size B: B random prompts of --context tokens (seeded), one batched prefill, then
greedy decode of --new-tokens tokens for all B at once with the KV cache (one model call per
step, timed after a device sync). Reports aggregate output tokens/s over the whole run
(B * new tokens / (prefill + decode)), the prefill time (every request's time to first token),
and the decode step time p50 / p99 (every request's inter-token latency). A batch that does not
fit in memory is reported as such.
"""
import argparse
import json
import statistics
import sys
import time

import torch

from hf_anchor_e2e import MAX_RANDOM_ID, backends, decode_greedy, load_model, prefill, sync


def run_batch(model, b, n, new_tokens, seed, decode_backends):
    g = torch.Generator().manual_seed(seed + b)
    ids = torch.randint(0, MAX_RANDOM_ID, (b, n), generator=g).to("cuda")
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    sync()
    t0 = time.perf_counter()
    logits, cache = prefill(model, ids, None)
    sync()
    prefill_s = time.perf_counter() - t0
    # The first token came from the prefill.
    steps, cache = decode_greedy(model, logits, cache, new_tokens - 1, decode_backends)
    total = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated()
    del cache, logits, ids
    torch.cuda.empty_cache()
    return prefill_s, steps, total, peak


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--batches", default="1,4,16,64")
    ap.add_argument("--context", type=int, default=8192)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--decode-sdpa", default="flash,efficient,math", help="as in hf_anchor_e2e.py")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA device")
    model = load_model(args.model)
    decode_backends = backends(args.decode_sdpa)
    rows = []
    with torch.inference_mode():
        run_batch(model, 1, 256, 4, args.seed, decode_backends)  # warm-up
        for b in [int(x) for x in args.batches.split(",") if x.strip()]:
            try:
                prefill_s, steps, total, peak = run_batch(model, b, args.context, args.new_tokens, args.seed,
                                                          decode_backends)
            except torch.cuda.OutOfMemoryError as e:
                print(f"batch {b}: out of memory ({str(e).splitlines()[0][:120]})")
                rows.append({"concurrent": b, "context_tokens": args.context, "error": "out of memory"})
                torch.cuda.empty_cache()
                continue
            q = sorted(steps)
            r = {"concurrent": b, "context_tokens": args.context, "output_tokens": args.new_tokens,
                 "hf_aggregate_tok_s": b * args.new_tokens / total, "hf_ttft_s": prefill_s,
                 "hf_itl_p50_s": statistics.median(steps) if steps else 0.0,
                 "hf_itl_p99_s": q[min(len(q) - 1, int(0.99 * (len(q) - 1) + 0.5))] if q else 0.0,
                 "hf_peak_gpu_bytes": peak}
            print(json.dumps(r))
            rows.append(r)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
