#!/usr/bin/env python3
"""Greedy-decode accuracy of a starmesh-needle checkpoint per task, context length and
attention mode: global attention, and a Python simulation of Star Attention.

    python3 tools/train/star_eval.py --model DIR --out DIR/eval.json [--n 50] [--lengths 1024,2048,4096]

Star Attention is simulated exactly (STAR_ATTENTION.md) by one attention mask over
[context ; query ; generated]:
  phase 1: a context token of block 0 attends causally within block 0; a context token of
           block i > 0 attends to the anchor (the first `anchor` context tokens, BOS
           included; anchor = block size, as the paper and starmesh's default) and causally
           within its own block; positions stay global (the anchor keeps 0..a-1). The
           anchor's KV is the same whatever block it is computed with, so reading block 0's
           KV for it is what every host computes.
  phase 2: query and generated tokens attend to every context token and causally to
           each other (exact).
"no anchor" drops the anchor term. The block size is ceil(context tokens / k) for k in
--blocks (4, 8, 16: a quarter, an eighth, a sixteenth of the context).

The forward is written out here (RMSNorm, RoPE, GQA, SwiGLU, as HF's Llama) over the
checkpoint's bf16 weights in float32, and checked against HF LlamaForCausalLM first.
"""
import argparse
import json
import math
import os
import random
import sys
import time

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from tokenizers import Tokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tasks  # noqa: E402


class Llama:
    """Float32 Llama forward with explicit positions, masks and a preallocated KV cache."""

    def __init__(self, model_dir: str, dev) -> None:
        with open(os.path.join(model_dir, "config.json")) as f:
            c = json.load(f)
        self.c = c
        sd = {k: v.to(dev, torch.float32) for k, v in load_file(os.path.join(model_dir, "model.safetensors")).items()}
        self.nl, self.h, self.kvh, self.hd = c["num_hidden_layers"], c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
        self.eps = c["rms_norm_eps"]
        rp = c.get("rope_parameters") or {}
        theta = rp.get("rope_theta", c.get("rope_theta", 10000.0))
        assert rp.get("rope_type", "default") == "default", rp
        self.inv_freq = 1.0 / (theta ** (torch.arange(0, self.hd, 2, dtype=torch.int64).to(dev, torch.float32) / self.hd))
        self.emb = sd["model.embed_tokens.weight"]
        self.norm = sd["model.norm.weight"]
        self.head = sd["lm_head.weight"] if "lm_head.weight" in sd else self.emb
        self.layers = []
        for i in range(self.nl):
            p = f"model.layers.{i}."
            self.layers.append({k: sd[p + n] for k, n in (
                ("ln1", "input_layernorm.weight"), ("ln2", "post_attention_layernorm.weight"),
                ("q", "self_attn.q_proj.weight"), ("k", "self_attn.k_proj.weight"),
                ("v", "self_attn.v_proj.weight"), ("o", "self_attn.o_proj.weight"),
                ("g", "mlp.gate_proj.weight"), ("u", "mlp.up_proj.weight"), ("d", "mlp.down_proj.weight"))})
        self.dev = dev

    def rms(self, x, w):
        return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))

    def rope(self, x, pos):  # x [B, H, T, D], pos [B, T]
        freqs = pos[:, :, None].float() * self.inv_freq[None, None, :]
        emb = torch.cat((freqs, freqs), dim=-1)[:, None]
        cos, sin = emb.cos(), emb.sin()
        x1, x2 = x[..., : self.hd // 2], x[..., self.hd // 2:]
        return x * cos + torch.cat((-x2, x1), dim=-1) * sin

    def new_cache(self, b: int, s: int):
        return [(torch.zeros(b, self.kvh, s, self.hd, device=self.dev),
                 torch.zeros(b, self.kvh, s, self.hd, device=self.dev)) for _ in range(self.nl)]

    def forward(self, ids, pos, mask, cache, start: int, all_logits: bool = False):
        """ids, pos [B, T]; mask bool [B, 1, T, start + T] (True: attend); writes the new
        KV at cache[start:start + T]; returns logits of the last (or every) position."""
        b, t = ids.shape
        x = self.emb[ids]
        rep = self.h // self.kvh
        for L, (kc, vc) in zip(self.layers, cache):
            h = self.rms(x, L["ln1"])
            q = (h @ L["q"].T).view(b, t, self.h, self.hd).transpose(1, 2)
            k = (h @ L["k"].T).view(b, t, self.kvh, self.hd).transpose(1, 2)
            v = (h @ L["v"].T).view(b, t, self.kvh, self.hd).transpose(1, 2)
            q, k = self.rope(q, pos), self.rope(k, pos)
            kc[:, :, start:start + t] = k
            vc[:, :, start:start + t] = v
            ka = kc[:, :, :start + t].repeat_interleave(rep, dim=1)
            va = vc[:, :, :start + t].repeat_interleave(rep, dim=1)
            o = F.scaled_dot_product_attention(q, ka, va, attn_mask=mask)
            x = x + o.transpose(1, 2).reshape(b, t, self.h * self.hd) @ L["o"].T
            h = self.rms(x, L["ln2"])
            x = x + (F.silu(h @ L["g"].T) * (h @ L["u"].T)) @ L["d"].T
        x = self.rms(x if all_logits else x[:, -1:], self.norm)
        return x @ self.head.T


def prefill_mask(ctx_lens, q_lens, t: int, mode: str, k: int, dev):
    """[B, 1, T, T] mask over left-padded rows [pad ; context ; query]."""
    rows = []
    idx = torch.arange(t, device=dev)
    for lc, lq in zip(ctx_lens, q_lens):
        off = t - lc - lq
        rel = idx - off  # index inside the real sequence (negative: padding)
        real = rel >= 0
        causal = idx[None, :] <= idx[:, None]
        allowed = causal & real[None, :] & real[:, None]
        if mode != "global":
            b = math.ceil(lc / k)
            blk = torch.div(rel.clamp(min=0), b, rounding_mode="floor")
            in_ctx_q = (rel < lc)[:, None]
            same = blk[:, None] == blk[None, :]
            anchor = (rel < b)[None, :] if mode == "star" else torch.zeros_like(same)
            allowed = allowed & (~in_ctx_q | same | anchor)
        allowed = allowed | torch.eye(t, dtype=torch.bool, device=dev)  # padding rows see themselves
        rows.append(allowed)
    return torch.stack(rows)[:, None]


@torch.no_grad()
def greedy(model: Llama, tok: Tokenizer, encoded, mode: str, k: int, max_new: int, stop_ids) -> list[list[int]]:
    """encoded: list of (context ids, query ids). Returns the generated ids per row (stop excluded)."""
    dev = model.dev
    b = len(encoded)
    lens = [len(c) + len(q) for c, q in encoded]
    t = max(lens)
    pad = stop_ids[0]
    ids = torch.full((b, t), pad, dtype=torch.int64)
    pos = torch.zeros((b, t), dtype=torch.int64)
    for i, (c, q) in enumerate(encoded):
        seq = c + q
        ids[i, t - len(seq):] = torch.tensor(seq)
        pos[i, t - len(seq):] = torch.arange(len(seq))
    ids, pos = ids.to(dev), pos.to(dev)
    mask = prefill_mask([len(c) for c, _ in encoded], [len(q) for _, q in encoded], t, mode, k, dev)
    cache = model.new_cache(b, t + max_new)
    logits = model.forward(ids, pos, mask, cache, 0)
    del mask
    key_ok = torch.zeros((b, t + max_new), dtype=torch.bool, device=dev)
    for i, n in enumerate(lens):
        key_ok[i, t - n:t] = True
    nxt = logits[:, -1].argmax(-1)
    out = [[] for _ in range(b)]
    done = [False] * b
    cur = torch.tensor(lens, device=dev)
    stop = set(stop_ids)
    for step in range(max_new):
        ids_l = nxt.tolist()
        for i in range(b):
            if not done[i]:
                if ids_l[i] in stop:
                    done[i] = True
                else:
                    out[i].append(ids_l[i])
        if all(done) or step == max_new - 1:
            break
        key_ok[:, t + step] = True
        m = key_ok[:, None, None, : t + step + 1]
        logits = model.forward(nxt[:, None], cur[:, None] + step, m, cache, t + step)
        nxt = logits[:, -1].argmax(-1)
    return out


def checks(model: Llama, model_dir: str, tok: Tokenizer, dev) -> dict:
    """Our float32 forward against HF LlamaForCausalLM (float32, eager attention) on one instance;
    star with one block (k = 1) against global; the star mask (k = 4) against explicit_star."""
    from transformers import LlamaForCausalLM
    hf = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager").to(dev).eval()
    inst = tasks.make_instance("niah_single", random.Random(5), 700)
    c = tok.encode(inst["context"]).ids
    q = tok.encode(inst["query"], add_special_tokens=False).ids
    ids = torch.tensor([c + q], device=dev)
    with torch.no_grad():
        ref = hf(ids).logits[0]
        t = ids.shape[1]
        pos = torch.arange(t, device=dev)[None]
        mine = model.forward(ids, pos, prefill_mask([len(c)], [len(q)], t, "global", 1, dev),
                             model.new_cache(1, t), 0, all_logits=True)[0]
        star1 = model.forward(ids, pos, prefill_mask([len(c)], [len(q)], t, "star", 1, dev),
                              model.new_cache(1, t), 0, all_logits=True)[0]
        k = 4
        masked = model.forward(ids, pos, prefill_mask([len(c)], [len(q)], t, "star", k, dev),
                               model.new_cache(1, t), 0)[0, -1]
        explicit = explicit_star(model, c, q, math.ceil(len(c) / k), dev)
    del hf
    return {"tokens": t, "max_abs_diff_vs_hf": float((mine - ref).abs().max()),
            "ref_abs_max": float(ref.abs().max()),
            "argmax_agree": float((mine.argmax(-1) == ref.argmax(-1)).float().mean()),
            "star_one_block_max_abs_diff": float((star1 - mine).abs().max()),
            "star_mask_vs_explicit_max_abs_diff": float((masked - explicit).abs().max()),
            "star_vs_global_last_max_abs_diff": float((masked - mine[-1]).abs().max())}


@torch.no_grad()
def explicit_star(model: Llama, c, q, b: int, dev):
    """Star Attention as STAR_ATTENTION.md states it, block by block: each block after the
    first is encoded as [anchor ; block] (anchor positions 0..b-1, block positions global),
    only the block's KV is kept; the query then attends to all of it. Returns the last logits."""
    lc = len(c)
    full = model.new_cache(1, lc + len(q))
    for s in range(0, lc, b):
        blk = c[s:s + b]
        seq = (c[:b] if s else []) + blk
        p = (list(range(b)) if s else []) + list(range(s, s + len(blk)))
        n = len(seq)
        cache = model.new_cache(1, n)
        causal = torch.tril(torch.ones(n, n, dtype=torch.bool, device=dev))[None, None]
        model.forward(torch.tensor([seq], device=dev), torch.tensor([p], device=dev), causal, cache, 0)
        a = n - len(blk)
        for (fk, fv), (kc, vc) in zip(full, cache):
            fk[:, :, s:s + len(blk)] = kc[:, :, a:]
            fv[:, :, s:s + len(blk)] = vc[:, :, a:]
    lq = len(q)
    m = torch.ones(lq, lc + lq, dtype=torch.bool, device=dev)
    m[:, lc:] = torch.tril(torch.ones(lq, lq, dtype=torch.bool, device=dev))
    out = model.forward(torch.tensor([q], device=dev), torch.arange(lc, lc + lq, device=dev)[None],
                        m[None, None], full, lc)
    return out[0, -1]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--lengths", default="1024,2048,4096")
    ap.add_argument("--tasks", default=",".join(tasks.TASKS))
    ap.add_argument("--blocks", default="4,8,16")
    ap.add_argument("--seed", type=int, default=777)
    ap.add_argument("--deadline", type=float, default=0, help="stop starting new cells after this many seconds")
    a = ap.parse_args()
    t_start = time.time()
    dev = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = False
    model = Llama(a.model, dev)
    tok = Tokenizer.from_file(os.path.join(a.model, "tokenizer.json"))
    stop_ids = [tok.token_to_id("<|end_of_text|>"), tok.token_to_id("<|eot_id|>")]
    check = checks(model, a.model, tok, dev)
    print("check:", json.dumps(check), flush=True)

    modes = [("global", 1)] + [("star", int(k)) for k in a.blocks.split(",")] + \
            [("noanchor", int(k)) for k in a.blocks.split(",")]
    rows, skipped = [], []
    examples = {}
    for length in [int(x) for x in a.lengths.split(",")]:
        for task in a.tasks.split(","):
            rng = random.Random(f"{a.seed}/{task}/{length}")
            insts = [tasks.make_instance(task, rng, length) for _ in range(a.n)]
            enc = [(tok.encode(i["context"]).ids, tok.encode(i["query"], add_special_tokens=False).ids) for i in insts]
            ans_len = max(len(tok.encode(" " + i["answer"], add_special_tokens=False).ids) for i in insts)
            ctx_tokens = sum(len(c) for c, _ in enc) / len(enc)
            t = max(len(c) + len(q) for c, q in enc)
            chunk = max(1, min(len(enc), int(4e8 // (t * t))))
            for mode, k in modes:
                if a.deadline and time.time() - t_start > a.deadline:
                    skipped.append({"task": task, "context_tokens": length, "mode": mode, "k": k})
                    continue
                right = 0
                for s in range(0, len(enc), chunk):
                    gen = greedy(model, tok, enc[s:s + chunk], "global" if mode == "global" else mode, k,
                                 ans_len + 4, stop_ids)
                    for j, g in enumerate(gen):
                        text = tok.decode(g, skip_special_tokens=True).strip()
                        ok = text == insts[s + j]["answer"]
                        right += ok
                        key = f"{task}/{length}/{mode}/{k}"
                        if key not in examples:
                            examples[key] = {"expected": insts[s + j]["answer"], "got": text}
                blocks = [math.ceil(len(c) / k) for c, _ in enc]
                rows.append({"task": task, "target_tokens": length, "context_tokens": round(ctx_tokens, 1),
                             "mode": "star" if mode != "global" else "global",
                             "anchor": mode == "star", "k": k,
                             "block_size": round(sum(blocks) / len(blocks), 1) if mode != "global" else None,
                             "anchor_size": (round(sum(blocks) / len(blocks), 1) if mode == "star" else 0)
                             if mode != "global" else None,
                             "n": len(enc), "accuracy": right / len(enc)})
            print(f"{task:16s} {length:5d} ({ctx_tokens:.0f} tok): " +
                  " ".join(f"{r['mode'][0]}{'' if r['anchor'] or r['mode'] == 'global' else '-na'}/{r['k']}="
                           f"{r['accuracy']:.2f}" for r in rows if r["task"] == task and r["target_tokens"] == length),
                  f"[{time.time() - t_start:.0f}s]", flush=True)
    with open(a.out, "w") as f:
        json.dump({"check": check, "n": a.n, "seed": a.seed, "rows": rows, "skipped": skipped,
                   "examples": examples, "seconds": round(time.time() - t_start, 1)}, f, indent=1)
    print_table(rows)
    return 0


def print_table(rows) -> None:
    cols = sorted({(r["mode"], r["anchor"], r["k"]) for r in rows}, key=lambda c: (c[0] != "global", not c[1], c[2]))
    name = {c: ("global" if c[0] == "global" else f"star 1/{c[2]}" + ("" if c[1] else " no-anchor")) for c in cols}
    print("| task | tokens | " + " | ".join(name[c] for c in cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    keys = []
    for r in rows:
        if (r["task"], r["target_tokens"]) not in keys:
            keys.append((r["task"], r["target_tokens"]))
    for task, length in keys:
        cells = {(r["mode"], r["anchor"], r["k"]): r["accuracy"] for r in rows
                 if r["task"] == task and r["target_tokens"] == length}
        print(f"| {task} | {length} | " + " | ".join(f"{cells[c]:.2f}" if c in cells else "-" for c in cols) + " |")


if __name__ == "__main__":
    sys.exit(main())
