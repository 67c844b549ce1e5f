#!/usr/bin/env python3
"""Plots `starmesh eval --json` rows as an SVG (no dependencies): accuracy against block size
in tokens for one task, a line per (mode, context length), global as a dashed level.

    python3 tools/plot_eval.py ROWS.json OUT.svg [--task niah_single]
"""
import argparse
import json
import math

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("rows")
    ap.add_argument("out")
    ap.add_argument("--task", default="niah_single")
    a = ap.parse_args()
    rows = [r for r in json.load(open(a.rows)) if r["task"] == a.task]
    lengths = sorted({r["target_tokens"] for r in rows})
    W, H, L, R, T, B = 840, 420, 60, 250, 40, 50
    blocks = [r["block_size"] for r in rows if r["mode"] != "global"]
    lo, hi = math.log2(min(blocks)) - 0.3, math.log2(max(blocks)) + 0.3
    x = lambda b: L + (math.log2(b) - lo) / (hi - lo) * (W - L - R)
    y = lambda acc: T + (1 - acc) * (H - T - B)
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{L}" y="22" font-size="14">{a.task}: accuracy by block size (starmesh eval, models/starmesh-needle)</text>']
    for acc in (0, 0.25, 0.5, 0.75, 1.0):
        svg.append(f'<line x1="{L}" x2="{W - R}" y1="{y(acc)}" y2="{y(acc)}" stroke="#ddd"/>')
        svg.append(f'<text x="{L - 8}" y="{y(acc) + 4}" text-anchor="end">{acc:.2f}</text>')
    for b in sorted({2 ** round(math.log2(v)) for v in blocks}):
        svg.append(f'<text x="{x(b)}" y="{H - B + 18}" text-anchor="middle">{b}</text>')
    svg.append(f'<text x="{(L + W - R) / 2}" y="{H - 12}" text-anchor="middle">block size (tokens, log scale)</text>')
    legend_y = T + 10
    for i, n in enumerate(lengths):
        color = COLORS[i % len(COLORS)]
        g = [r for r in rows if r["target_tokens"] == n and r["mode"] == "global"]
        if g:
            svg.append(f'<line x1="{L}" x2="{W - R}" y1="{y(g[0]["accuracy"])}" y2="{y(g[0]["accuracy"])}" '
                       f'stroke="{color}" stroke-dasharray="2,4"/>')
        for mode, dash in (("star", ""), ("star-no-anchor", "6,4")):
            pts = sorted((r["block_size"], r["accuracy"]) for r in rows if r["target_tokens"] == n and r["mode"] == mode)
            if not pts:
                continue
            path = " ".join(f"{x(b):.1f},{y(acc):.1f}" for b, acc in pts)
            svg.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2" stroke-dasharray="{dash}"/>')
            for b, acc in pts:
                svg.append(f'<circle cx="{x(b):.1f}" cy="{y(acc):.1f}" r="3" fill="{color}"/>')
            svg.append(f'<line x1="{W - R + 15}" x2="{W - R + 40}" y1="{legend_y}" y2="{legend_y}" stroke="{color}" '
                       f'stroke-width="2" stroke-dasharray="{dash}"/>')
            svg.append(f'<text x="{W - R + 45}" y="{legend_y + 4}">{mode}, {n} tokens</text>')
            legend_y += 18
    svg.append(f'<text x="{W - R + 15}" y="{legend_y + 8}">dotted: global</text>')
    svg.append("</svg>")
    open(a.out, "w").write("\n".join(svg))


if __name__ == "__main__":
    main()
