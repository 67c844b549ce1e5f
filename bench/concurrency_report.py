#!/usr/bin/env python3
"""Joins concurrency_bench's rows with HF's batched anchor: bench/results/concurrency-h200.json
(date, workers, concurrent, context_tokens, aggregate_tok_s, ttft_p50_s, ttft_p99_s, itl_p50_s,
itl_p99_s, hf_aggregate_tok_s, the mean decode batch, and the mode: fresh contexts or questions over
kept ones) and a plot of aggregate tokens/s and
inter-token p99 against concurrency.

    python3 bench/concurrency_report.py OURS.json HF.json --date 2026-12-05 --json OUT.json --svg OUT.svg
"""
import argparse
import json

from e2e_report import panel

FIELDS = ["workers", "mode", "variant", "concurrent", "context_tokens", "aggregate_tok_s", "ttft_p50_s", "ttft_p99_s", "itl_p50_s",
          "itl_p99_s", "mean_decode_batch", "failed"]
COLORS = ["#1f77b4", "#2ca02c", "#9467bd", "#8c564b"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ours", help="concurrency_bench's JSON files, comma-separated")
    ap.add_argument("hf", nargs="?")
    ap.add_argument("--date", required=True)
    ap.add_argument("--json", required=True)
    ap.add_argument("--svg", required=True)
    a = ap.parse_args()
    ours = [r for path in a.ours.split(",") for r in json.load(open(path))]
    hf = {r["concurrent"]: r for r in json.load(open(a.hf))} if a.hf else {}
    rows = []
    for r in ours:
        row = {"date": a.date, **{k: r.get(k) for k in FIELDS}}
        # HF's batched generate prefills its contexts: its figure sits beside our fresh mode only.
        fresh = (r.get("mode") or "fresh") == "fresh"
        row["hf_aggregate_tok_s"] = hf.get(r["concurrent"], {}).get("hf_aggregate_tok_s") if fresh else None
        rows.append(row)
    json.dump(rows, open(a.json, "w"), indent=1)

    levels = sorted({r["concurrent"] for r in rows})
    def key(r):
        return (r["workers"], r.get("mode") or "fresh", r.get("variant") or "")

    series = sorted({key(r) for r in rows})
    series_tok, series_itl = [], []
    for k, (w, mode, variant) in enumerate(series):
        mine = [r for r in rows if key(r) == (w, mode, variant)]
        name = f"ours, {w} worker{'s' if w > 1 else ''}" + (", kept contexts" if mode == "kept" else "")
        name += f", {variant}" if variant else ""
        series_tok.append((name, COLORS[k % 4], False, sorted((r["concurrent"], r["aggregate_tok_s"]) for r in mine)))
        series_itl.append((name, COLORS[k % 4], False, sorted((r["concurrent"], r["itl_p99_s"]) for r in mine)))
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
