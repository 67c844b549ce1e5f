#!/usr/bin/env python3
"""Projects Star Attention on 8 and 32 GPUs at 128K-1M context from figures measured on one
H200 (bench/results/e2e-h200.json) and the data plane's exchange costs (bench/RESULTS.md,
2026-11-29 and 2026-12-04 tables), and writes the table's rows as JSON and a plot.

    python3 bench/project_scale.py --json bench/results/projection-h200.json \
        --svg bench/results/projection-h200.svg

What it assumes (each stated again in bench/RESULTS.md):
- one host per GPU, every host's phase 1 at once: time to first token = the slowest host's
  phase 1 (its block against an anchor of the same size), f(block), fitted as a*b + c*b^2 to
  the measured slowest-host times of 4-host runs (blocks 2K-32K); past 32K it is extrapolated;
- a decode step = the query host's step over its own C/N tokens (t0 + k * C/N, fitted to the
  measured global decode steps) plus one exchange per layer with the N-1 shard hosts, whose
  partials over their C/N tokens run in parallel under it;
- the exchange at N ranks: the measured UCX shared-memory round trip at the decode shape
  (n_q 1, 32 heads x 128), linear in N (one UCX worker at the query host moves every byte),
  plus the message MACs (the query host seals N-1 copies of Q and opens N-1 answers). Across
  machines this assumes a network as fast as shared memory: a lower bound;
- memory per GPU: the weights and KV of C/N tokens (128 KiB a token for Llama-3.1-8B).
"""
import argparse
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from e2e_report import panel  # noqa: E402

LAYERS = 32
KV_BYTES_PER_TOKEN = 128 * 1024
WEIGHT_BYTES = 16.06e9
GPU_BYTES = 139 * 2**30  # what one H200 offers (the device tool's figure)
# Round trip of one layer's exchange over UCX shm on the H200 host, n_q 1, 32x128, median us
# (bench/RESULTS.md, 2026-11-29): ranks -> us.
EXCHANGE_US = {2: 7.3, 4: 20.0, 8: 42.3}
# AES-256-GMAC per 16 KiB message, sealed or opened (2026-12-04 table: 2.1-4.3 us; the middle).
MAC_US = 2.75


def fit2(points):
    """Least squares of y = a*x + c*x^2 (no constant): [(x, y)] -> (a, c)."""
    s11 = sum(x * x for x, _ in points)
    s12 = sum(x ** 3 for x, _ in points)
    s22 = sum(x ** 4 for x, _ in points)
    t1 = sum(x * y for x, y in points)
    t2 = sum(x * x * y for x, y in points)
    det = s11 * s22 - s12 * s12
    return (t1 * s22 - t2 * s12) / det, (s11 * t2 - s12 * t1) / det


def fit_line(points):
    """Least squares of y = p + q*x: [(x, y)] -> (p, q)."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    q = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)
    return my - q * mx, q


def exchange_s(ranks):
    p, q = fit_line(list(EXCHANGE_US.items()))
    return (p + q * ranks + 2 * MAC_US * (ranks - 1)) * 1e-6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--measured", default=os.path.join(os.path.dirname(__file__), "results", "e2e-h200.json"))
    ap.add_argument("--json", required=True)
    ap.add_argument("--svg", required=True)
    args = ap.parse_args()
    rows = json.load(open(args.measured))
    star = [r for r in rows if r["mode"] == "star" and r["phase1_max_host_s"]]
    glob = [r for r in rows if r["mode"] == "global"]
    date = max(r["date"] for r in rows)
    # Measured 4-host runs: block = context / 4.
    a, c = fit2([(r["context_tokens"] / 4, r["phase1_max_host_s"]) for r in star])
    measured_blocks = max(r["context_tokens"] / 4 for r in star)
    ga, gc = fit2([(r["context_tokens"], r["ttft_s"]) for r in glob])
    t0, k = fit_line([(r["context_tokens"], r["decode_p50_s"]) for r in glob])
    out = []
    contexts = [131072, 262144, 524288, 1048576]
    for n in (1, 8, 32):
        for ctx in contexts:
            per_gpu = ctx / n
            row = {"source_date": date, "gpus": n, "context_tokens": ctx,
                   "gpu_bytes": WEIGHT_BYTES + KV_BYTES_PER_TOKEN * per_gpu}
            row["fits"] = row["gpu_bytes"] <= GPU_BYTES
            if n == 1:  # global attention on one GPU
                row.update(mode="global", ttft_s=ga * ctx + gc * ctx * ctx, decode_step_s=t0 + k * ctx,
                           extrapolated=ctx > max(r["context_tokens"] for r in glob))
            else:
                row.update(mode="star", block_tokens=per_gpu, ttft_s=a * per_gpu + c * per_gpu ** 2,
                           exchange_s=LAYERS * exchange_s(n), extrapolated=per_gpu > measured_blocks)
                row["decode_step_s"] = t0 + k * per_gpu + row["exchange_s"]
            out.append(row)
    fits = {"phase1_s_per_block_token": a, "phase1_s_per_block_token2": c, "global_prefill_a": ga,
            "global_prefill_c": gc, "decode_t0_s": t0, "decode_s_per_token": k,
            "exchange_s_at_8": exchange_s(8), "exchange_s_at_32": exchange_s(32)}
    json.dump({"fits": fits, "rows": out}, open(args.json, "w"), indent=1)

    svg = ['<svg xmlns="http://www.w3.org/2000/svg" width="860" height="460" font-family="sans-serif" '
           'font-size="11">', '<rect width="100%" height="100%" fill="white"/>']
    colors = {1: "#1f77b4", 8: "#d62728", 32: "#9467bd"}
    label = {1: "global, 1 GPU", 8: "star, 8 GPUs", 32: "star, 32 GPUs"}
    series_t, series_d = [], []
    for n in (1, 8, 32):
        pts = [r for r in out if r["gpus"] == n and r["fits"]]
        series_t.append((label[n], colors[n], n > 1, [(r["context_tokens"], r["ttft_s"]) for r in pts]))
        series_d.append((label[n], colors[n], n > 1, [(r["context_tokens"], r["decode_step_s"] * 1e3) for r in pts]))
    panel(svg, 0, "time to first token, projected (s)", "seconds", series_t, contexts)
    panel(svg, 430, "decode step, projected (ms)", "ms", series_d, contexts)
    svg.append("</svg>")
    open(args.svg, "w").write("\n".join(svg))
    for r in out:
        print(f'{r["gpus"]:>2} GPUs {r["context_tokens"] // 1024:>5}K {r["mode"]:>6}: ttft {r["ttft_s"]:7.2f} s, '
              f'step {r["decode_step_s"] * 1e3:6.2f} ms, {r["gpu_bytes"] / 2**30:6.1f} GiB/GPU'
              f'{"" if r["fits"] else " (does not fit)"}{" (extrapolated)" if r["extrapolated"] else ""}')
    print(json.dumps(fits, indent=1))


if __name__ == "__main__":
    main()
