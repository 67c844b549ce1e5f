#!/usr/bin/env python3
"""Trains starmesh-needle: a small Llama (HF LlamaForCausalLM) on the synthetic tasks of
tasks.py, with global attention (SDPA), bf16 autocast and AdamW, for a wall-clock budget.

    python3 tools/train/train.py --out DIR [--train-seconds 420] [--seed 20261204]

Writes into DIR: tokenizer.json, tokenizer_config.json (the byte-level BPE trained here),
config.json + model.safetensors (bf16), train.json (the settings, the loss curve and
timings) and loss.png. Needs a CUDA GPU, torch, transformers, tokenizers, safetensors and
matplotlib (the H200 machine has them). Every schedule (warm-up excepted) runs on the
fraction of the time budget spent, so a slower or faster GPU trains for the same time.

The recipe (what made retrieval form at all, see tools/train/README.md): the loss is the
language-model loss over every token plus `--answer-weight` times the mean loss over the
answer tokens; the first third of the budget uses short contexts (256-1024 tokens), the
rest mostly long ones (1024 to --max-tokens) with a fifth kept short.
"""
import argparse
import json
import math
import multiprocessing as mp
import os
import random
import sys
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
import torch.nn.functional as F
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tasks  # noqa: E402

# tools/make_golden.py's Llama-3 pre-tokenizer with one change: digits split one by one
# (\p{N} instead of \p{N}{1,3}), so a number is a sequence of digit tokens.
SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
         r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>",
            "<|start_header_id|>", "<|end_header_id|>"]
BOS, EOT_TEXT, EOT = SPECIALS[0], SPECIALS[1], SPECIALS[2]


def build_tokenizer(vocab: int, seed: int) -> Tokenizer:
    """Byte-level BPE as make_golden.py builds it, trained on the task generator's text."""
    rng = random.Random(seed)
    texts = []
    for i in range(1200):
        inst = tasks.make_instance(tasks.TASKS[i % len(tasks.TASKS)], rng, rng.randint(200, 1500))
        texts.append(inst["context"] + inst["query"] + " " + inst["answer"])
    words = tasks.ADJECTIVES + tasks.NOUNS + tasks.VERBS + tasks.PREPOSITIONS + tasks.CODED
    texts += [" ".join(words)] * 50
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab - len(SPECIALS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    tok.add_special_tokens(SPECIALS)
    assert tok.get_vocab_size() == vocab, tok.get_vocab_size()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", special_tokens=[(BOS, tok.token_to_id(BOS))])
    return tok


def encode_instance(tok: Tokenizer, inst: dict) -> tuple[list[int], int]:
    """[BOS] context, query, " " answer, <|eot_id|>; returns ids and where the answer starts."""
    ctx = tok.encode(inst["context"]).ids  # the post-processor adds BOS
    q = tok.encode(inst["query"], add_special_tokens=False).ids
    ans = tok.encode(" " + inst["answer"], add_special_tokens=False).ids + [tok.token_to_id(EOT)]
    return ctx + q + ans, len(ctx) + len(q)


class Batches(torch.utils.data.IterableDataset):
    """Endless batches of about `tokens_per_step` tokens; the length range follows the
    shared training progress (a fraction of the time budget in [0, 1])."""

    def __init__(self, tok_path: str, seed: int, tokens_per_step: int, max_tokens: int,
                 progress) -> None:
        self.tok_path, self.seed, self.tps = tok_path, seed, tokens_per_step
        self.max_tokens, self.progress = max_tokens, progress

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid = info.id if info else 0
        rng = random.Random(self.seed * 1000 + wid)
        tok = Tokenizer.from_file(self.tok_path)
        pad = tok.token_to_id(EOT_TEXT)
        while True:
            p = self.progress.value
            if p < 1 / 3 or rng.random() < 0.2:
                length = rng.randint(256, 1024)
            else:
                length = rng.randint(1024, self.max_tokens)
            b = max(1, self.tps // (length + 48))
            seqs = [encode_instance(tok, tasks.make_instance(tasks.sample_task(rng), rng, length))
                    for _ in range(b)]
            t = max(len(s) for s, _ in seqs) - 1
            t = (t + 63) // 64 * 64
            x = torch.full((b, t), pad, dtype=torch.int64)
            y = torch.full((b, t), -100, dtype=torch.int64)
            ans = torch.zeros((b, t), dtype=torch.bool)
            for i, (s, a0) in enumerate(seqs):
                n = len(s) - 1
                x[i, :n] = torch.tensor(s[:-1])
                y[i, :n] = torch.tensor(s[1:])
                ans[i, a0 - 1:n] = True  # targets that are answer tokens (and the final eot)
            yield x, y, ans


def make_model(a, tok: Tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(
        vocab_size=a.vocab, hidden_size=a.hidden, intermediate_size=a.intermediate,
        num_hidden_layers=a.layers, num_attention_heads=a.heads, num_key_value_heads=a.kv_heads,
        head_dim=64, max_position_embeddings=a.max_positions, rms_norm_eps=1e-5,
        rope_theta=a.rope_theta, tie_word_embeddings=False,
        bos_token_id=tok.token_to_id(BOS),
        eos_token_id=[tok.token_to_id(EOT_TEXT), tok.token_to_id(EOT)],
        attention_bias=False, mlp_bias=False, hidden_act="silu")
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(a.seed)
    return LlamaForCausalLM(cfg)


def lr_at(a, step: int, p: float) -> float:
    warm = min(1.0, (step + 1) / a.warmup_steps)
    return a.lr * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


def plot(curve: list[dict], path: str, switch_step) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    steps = [c["step"] for c in curve]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(steps, [c["lm_loss"] for c in curve], label="LM loss (all tokens)")
    ax.plot(steps, [c["answer_loss"] for c in curve], label="answer-token loss")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats)")
    ax2 = ax.twinx()
    ax2.plot(steps, [c["answer_exact_tf"] for c in curve], color="green", alpha=0.6,
             label="answers exact (teacher-forced, train batch)")
    ax2.set_ylim(0, 1.02)
    ax2.set_ylabel("fraction exact")
    if switch_step is not None:
        ax.axvline(switch_step, color="grey", ls="--", lw=1)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="center right", fontsize=8)
    ax.set_title("starmesh-needle training (dashed: short contexts end)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=20261204)
    ap.add_argument("--train-seconds", type=float, default=420)
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: time only)")
    ap.add_argument("--tokens-per-step", type=int, default=65536)
    ap.add_argument("--max-tokens", type=int, default=4096, help="longest training context")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup-steps", type=int, default=100)
    ap.add_argument("--answer-weight", type=float, default=4.0)
    ap.add_argument("--vocab", type=int, default=2048)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--intermediate", type=int, default=768)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--rope-theta", type=float, default=500000.0)
    ap.add_argument("--max-positions", type=int, default=65536)
    ap.add_argument("--workers", type=int, default=12)
    ap.add_argument("--log-every", type=int, default=20)
    ap.add_argument("--init", default="", help="continue from this output folder (weights, tokenizer, curve); "
                    "the optimizer starts afresh and the curriculum starts in its long phase")
    ap.add_argument("--weights", default="", help="task mixture, e.g. niah_single=0.4,vt=0.1 (default: tasks.TASK_WEIGHTS)")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    t_start = time.time()
    torch.backends.cuda.matmul.allow_tf32 = True
    dev = torch.device("cuda")

    if a.weights:
        tasks.TASK_WEIGHTS.update({k: float(v) for k, v in (kv.split("=") for kv in a.weights.split(","))})
    prev = {}
    if a.init:
        tok = Tokenizer.from_file(os.path.join(a.init, "tokenizer.json"))
        with open(os.path.join(a.init, "train.json")) as f:
            prev = json.load(f)
    else:
        tok = build_tokenizer(a.vocab, a.seed)
    tok_path = os.path.join(a.out, "tokenizer.json")
    tok.save(tok_path)
    with open(os.path.join(a.out, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": BOS, "eos_token": EOT,
                   "pad_token": EOT_TEXT, "model_max_length": a.max_positions,
                   "clean_up_tokenization_spaces": False}, f, indent=2)
    probe = tok.encode("The special magic number for quiet-harbor is 482913.").tokens
    print(f"tokenizer: vocab {tok.get_vocab_size()}, built in {time.time() - t_start:.1f} s; {probe}", flush=True)

    model = make_model(a, tok)
    if a.init:
        from safetensors.torch import load_file
        state = {k: v.float() for k, v in load_file(os.path.join(a.init, "model.safetensors")).items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
        assert not unexpected and all("rotary" in m for m in missing), (missing, unexpected)
    model = model.to(dev)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.2f} M parameters; {model.config.to_json_string()}", flush=True)
    decay = [p for n, p in model.named_parameters() if p.dim() == 2 and "embed" not in n]
    other = [p for n, p in model.named_parameters() if not (p.dim() == 2 and "embed" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8, fused=True)

    progress = mp.Value("d", 0.0, lock=False)
    loader = torch.utils.data.DataLoader(
        Batches(tok_path, a.seed + (1 if a.init else 0), a.tokens_per_step, a.max_tokens, progress), batch_size=None,
        num_workers=a.workers, pin_memory=True, prefetch_factor=4, persistent_workers=True)
    it = iter(loader)
    next(it)  # workers up
    curve, switch_step = list(prev.get("curve", [])), prev.get("short_phase_end_step")
    step0 = prev.get("steps", 0)
    sec0 = prev.get("train_seconds", 0.0)
    acc = {"lm": 0.0, "ans": 0.0, "exact": 0.0, "n": 0, "tokens": 0}
    t0 = time.time()
    step, p = 0, 0.0
    data_wait = 0.0
    while True:
        p = (time.time() - t0) / a.train_seconds
        if p >= 1.0 or (a.max_steps and step >= a.max_steps):
            break
        progress.value = max(p, 0.5) if a.init else p
        if switch_step is None and p >= 1 / 3:
            switch_step = step
        tw = time.time()
        x, y, ans = next(it)
        data_wait += time.time() - tw
        x, y, ans = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True), ans.to(dev, non_blocking=True)
        lr = lr_at(a, step, p)
        for g in opt.param_groups:
            g["lr"] = lr
        with torch.autocast("cuda", dtype=torch.bfloat16):
            h = model.model(input_ids=x, use_cache=False).last_hidden_state
            logits = model.lm_head(h)
        ce = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="none",
                             ignore_index=-100).view_as(y)
        valid = (y != -100).float()
        ansf = ans.float()
        lm = (ce * valid).sum() / valid.sum()
        al = (ce * ansf).sum() / ansf.sum()
        loss = lm + a.answer_weight * al
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        if step % a.log_every == 0 or step == 1:
            with torch.no_grad():
                right = (logits.argmax(-1) == y) | ~ans
                exact = right.all(dim=1).float().mean()
            row = {"step": step0 + step, "seconds": round(sec0 + time.time() - t0, 2), "lr": lr,
                   "lm_loss": float(lm.detach()), "answer_loss": float(al.detach()), "answer_exact_tf": float(exact),
                   "batch": list(x.shape), "progress": round(p, 4)}
            curve.append(row)
            if step % (a.log_every * 10) == 0 or step == 1:
                el = time.time() - t0
                print(f"step {step:5d} {el:6.1f}s ({step / el:.2f} steps/s, data wait {data_wait:.1f}s) "
                      f"lr {lr:.2e} lm {row['lm_loss']:.4f} ans {row['answer_loss']:.4f} "
                      f"exact_tf {row['answer_exact_tf']:.3f} batch {tuple(x.shape)}", flush=True)
    torch.cuda.synchronize()
    train_s = time.time() - t0
    print(f"trained {step} steps in {train_s:.1f} s ({step / train_s:.2f} steps/s); data wait {data_wait:.1f} s",
          flush=True)
    del it, loader

    model = model.to(torch.bfloat16)
    tmp = os.path.join(a.out, "_save")
    model.save_pretrained(tmp)
    for name in ("config.json", "model.safetensors"):
        os.replace(os.path.join(tmp, name), os.path.join(a.out, name))
    for name in os.listdir(tmp):
        os.remove(os.path.join(tmp, name))
    os.rmdir(tmp)
    with open(os.path.join(a.out, "train.json"), "w") as f:
        json.dump({"args": vars(a), "previous_args": prev.get("args"), "parameters": n_params,
                   "steps": step0 + step, "train_seconds": round(sec0 + train_s, 1),
                   "segments": prev.get("segments", [{"steps": step0, "seconds": sec0}] if a.init else [])
                   + [{"steps": step, "seconds": round(train_s, 1), "init": a.init or None}],
                   "total_seconds": round(time.time() - t_start, 1), "short_phase_end_step": switch_step,
                   "data_wait_seconds": round(data_wait, 1), "curve": curve}, f, indent=1)
    plot(curve, os.path.join(a.out, "loss.png"), switch_step)
    print(f"saved to {a.out} ({time.time() - t_start:.1f} s in all)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
