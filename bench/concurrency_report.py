#!/usr/bin/env python3
"""Joins concurrency_bench's rows with HF's batched anchor: bench/results/concurrency-h200.json
(date, workers, concurrent, context_tokens, aggregate_tok_s, ttft_p50_s, ttft_p99_s, itl_p50_s,
itl_p99_s, hf_aggregate_tok_s, and the mean decode batch) and a plot of aggregate tokens/s and
inter-token p99 against concurrency.

    python3 bench/concurrency_report.py OURS.json HF.json --date 2026-12-05 --json OUT.json --svg OUT.svg
"""
import argparse
import json

from e2e_report import panel

FIELDS = ["workers", "concurrent", "context_tokens", "aggregate_tok_s", "ttft_p50_s", "ttft_p99_s", "itl_p50_s",
          "itl_p99_s", "mean_decode_batch", "failed"]
COLORS = ["#1f77b4", "#2ca02c", "#9467bd", "#8c564b"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ours")
    ap.add_argument("hf", nargs="?")
    ap.add_argument("--date", required=True)
    ap.add_argument("--json", required=True)
    ap.add_argument("--svg", required=True)
    a = ap.parse_args()
    ours = json.load(open(a.ours))
    hf = {r["concurrent"]: r for r in json.load(open(a.hf))} if a.hf else {}
    rows = []
    for r in ours:
        row = {"date": a.date, **{k: r.get(k) for k in FIELDS}}
        row["hf_aggregate_tok_s"] = hf.get(r["concurrent"], {}).get("hf_aggregate_tok_s")
        rows.append(row)
    json.dump(rows, open(a.json, "w"), indent=1)

    levels = sorted({r["concurrent"] for r in rows})
    workers = sorted({r["workers"] for r in rows})
    series_tok, series_itl = [], []
    for k, w in enumerate(workers):
        pts = sorted((r["concurrent"], r["aggregate_tok_s"]) for r in rows if r["workers"] == w)
        series_tok.append((f"ours, {w} worker{'s' if w > 1 else ''}", COLORS[k % 4], False, pts))
        itl = sorted((r["concurrent"], r["itl_p99_s"]) for r in rows if r["workers"] == w)
        series_itl.append((f"ours, {w} worker{'s' if w > 1 else ''}", COLORS[k % 4], False, itl))
    if hf:
        series_tok.append(("HF transformers, batched generate", "#d62728", True,
                           sorted((b, r.get("hf_aggregate_tok_s")) for b, r in hf.items())))
        series_itl.append(("HF transformers, batched generate", "#d62728", True,
                           sorted((b, r.get("hf_itl_p99_s")) for b, r in hf.items())))
    svg = ['<svg xmlns="http://www.w3.org/2000/svg" width="860" height="430" font-family="sans-serif" font-size="12">',
           '<rect width="100%" height="100%" fill="white"/>']
    tick = lambda n: str(n)
    panel(svg, 0, "Aggregate output (tokens/s)", "tokens / s", series_tok, levels, xlabel="concurrent requests",
          xtick=tick)
    panel(svg, 430, "Inter-token latency p99 (s)", "seconds", series_itl, levels, xlabel="concurrent requests",
          xtick=tick)
    svg.append("</svg>")
    open(a.svg, "w").write("\n".join(svg))
    print(f"concurrency_report: {len(rows)} rows -> {a.json}, {a.svg}")


if __name__ == "__main__":
    main()
