#!/usr/bin/env python3
"""Joins decode_bench's JSON (ours) and hf_anchor_e2e.py's JSON (HF) from one run into
bench/results/e2e-h200.json rows, and draws decode speed and time to first token against
context length as an SVG (no dependencies).

    python3 bench/e2e_report.py OURS.json HF.json --date 2026-12-04 --json OUT.json --svg OUT.svg
"""
import argparse
import json
import math

COLORS = {"global": "#1f77b4", "star": "#d62728", "hf": "#2ca02c", "floor": "#7f7f7f"}


def rows(ours, hf, date):
    by_len = {h["context_tokens"]: h for h in hf}
    out = []
    for o in ours:
        h = by_len.get(o["context_tokens"], {})
        out.append({
            "date": date,
            "context_tokens": o["context_tokens"],
            "mode": o["mode"],
            "ttft_s": o["ttft_s"],
            "decode_tok_s": o["decode_tok_s"],
            "decode_p50_s": o["decode_p50_s"],
            "hf_prefill_s": h.get("hf_prefill_s"),
            "hf_decode_tok_s": h.get("hf_decode_tok_s"),
            "floor_decode_tok_s": o["floor_decode_tok_s"],
            "phase1_max_host_s": o.get("phase1_max_host_s"),
            "phase1_s": o.get("phase1_s"),
            "peak_gpu_bytes": o["peak_gpu_bytes"],
            "hf_peak_gpu_bytes": h.get("hf_peak_gpu_bytes"),
        })
    return out


def panel(svg, x0, title, ylabel, series, lengths, W=420, H=420, xlabel="context tokens",
          xtick=lambda n: f"{n // 1024}K"):
    """One log-x line chart at x0: series = [(label, color, dashed, [(x, value)])]."""
    L, R, T, B = 60, 20, 40, 130
    vals = [v for _, _, _, pts in series for _, v in pts if v]
    top = max(vals) * 1.1
    lo, hi = math.log2(min(lengths)) - 0.3, math.log2(max(lengths)) + 0.3
    x = lambda n: x0 + L + (math.log2(n) - lo) / (hi - lo) * (W - L - R)
    y = lambda v: T + (1 - v / top) * (H - T - B)
    svg.append(f'<text x="{x0 + L}" y="22" font-size="13">{title}</text>')
    for i in range(5):
        v = top * i / 4
        svg.append(f'<line x1="{x0 + L}" x2="{x0 + W - R}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>')
        svg.append(f'<text x="{x0 + L - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.3g}</text>')
    for n in lengths:
        svg.append(f'<text x="{x(n):.1f}" y="{H - B + 18}" text-anchor="middle">{xtick(n)}</text>')
    svg.append(f'<text x="{x0 + (W + L - R) / 2}" y="{H - B + 36}" text-anchor="middle">{xlabel}</text>')
    svg.append(f'<text x="{x0 + 14}" y="{(H - B + T) / 2}" transform="rotate(-90 {x0 + 14} {(H - B + T) / 2})" '
               f'text-anchor="middle">{ylabel}</text>')
    for k, (label, color, dashed, pts) in enumerate(series):
        pts = [(n, v) for n, v in pts if v]
        path = " ".join(f"{'M' if i == 0 else 'L'}{x(n):.1f},{y(v):.1f}" for i, (n, v) in enumerate(pts))
        dash = ' stroke-dasharray="5,4"' if dashed else ""
        svg.append(f'<path d="{path}" fill="none" stroke="{color}" stroke-width="2"{dash}/>')
        for n, v in pts:
            svg.append(f'<circle cx="{x(n):.1f}" cy="{y(v):.1f}" r="3" fill="{color}"/>')
        lx, ly = x0 + L, H - B + 54 + k * 16
        svg.append(f'<line x1="{lx}" x2="{lx + 22}" y1="{ly - 4}" y2="{ly - 4}" stroke="{color}" stroke-width="2"{dash}/>')
        svg.append(f'<text x="{lx + 28}" y="{ly}">{label}</text>')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ours")
    ap.add_argument("hf")
    ap.add_argument("--date", required=True)
    ap.add_argument("--json", required=True)
    ap.add_argument("--svg", required=True)
    a = ap.parse_args()
    r = rows(json.load(open(a.ours)), json.load(open(a.hf)), a.date)
    json.dump(r, open(a.json, "w"), indent=1)
    lengths = sorted({x["context_tokens"] for x in r})
    mode = lambda m, key: [(x["context_tokens"], x[key]) for x in r if x["mode"] == m]
    hf = {x["context_tokens"]: x for x in r if x["mode"] == "global"}
    svg = ['<svg xmlns="http://www.w3.org/2000/svg" width="860" height="430" font-family="sans-serif" font-size="12">',
           '<rect width="860" height="430" fill="white"/>']
    panel(svg, 0, "Decode, batch 1 (tokens/s)", "tokens / s", [
        ("starmesh global", COLORS["global"], False, mode("global", "decode_tok_s")),
        ("starmesh star, 4 hosts, 1 GPU", COLORS["star"], False, mode("star", "decode_tok_s")),
        ("HF transformers", COLORS["hf"], False, [(n, x["hf_decode_tok_s"]) for n, x in hf.items()]),
        ("bandwidth floor", COLORS["floor"], True, mode("global", "floor_decode_tok_s")),
    ], lengths)
    panel(svg, 430, "Time to first token (s)", "seconds", [
        ("starmesh global", COLORS["global"], False, mode("global", "ttft_s")),
        ("star: slowest host's phase 1", COLORS["star"], True, mode("star", "phase1_max_host_s")),
        ("HF transformers prefill", COLORS["hf"], False, [(n, x["hf_prefill_s"]) for n, x in hf.items()]),
        ("star: 4 hosts in turn, 1 GPU", COLORS["star"], False, mode("star", "ttft_s")),
    ], lengths)
    svg.append("</svg>")
    open(a.svg, "w").write("\n".join(svg))
    print(f"e2e_report: {len(r)} rows -> {a.json}, {a.svg}")


if __name__ == "__main__":
    main()
