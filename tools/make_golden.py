#!/usr/bin/env python3
"""Writes the golden fixtures that starmesh's model tests compare against.

Run on a machine with PyTorch, transformers, tokenizers and safetensors (the H200 test
machine has them); everything is computed on the CPU, in float64, so no TF32 or kernel
choice leaks into the reference. Usage:

    python3 tools/make_golden.py --llama3-tokenizer PATH/tokenizer.json --out DIR

It writes into DIR:
  model/            a tiny random Llama-3.1-style checkpoint (bf16, 2 safetensors shards
                    + index, GQA 8 q / 2 kv heads, llama3 rope scaling) with its own
                    byte-level BPE tokenizer.json trained here (Llama-3 pre-tokenizer)
  reference.safetensors   input ids and HF logits (float64 compute, stored f32)
  greedy.json       32-token greedy continuations and the smallest top-1/top-2 margin
  tokenizer_llama3_1.jsonl, tokenizer_tiny.jsonl
                    {"text", "ids"} per line: HF tokenizers' ids (no special tokens added)
"""
import argparse
import glob
import json
import os
import random
import sys

import torch
from safetensors.torch import save_file
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM

LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>",
            "<|start_header_id|>", "<|end_header_id|>"]
VOCAB = 2048
GREEDY_STEPS = 32


def corpus_strings(seed: int) -> list[str]:
    """At least 500 strings: hand-picked edge cases, then seeded random mixtures."""
    fixed = [
        "", " ", "  ", "\n", "\t", "\r\n", "a", "Hello world", "Hello, world!",
        "  leading spaces", "trailing spaces   ", "a  b   c    d", "tab\tseparated\tvalues",
        "line one\nline two\n\nline four", "windows\r\nline\r\nendings", "\n\n\n   \n",
        "it's I'M we'll THEY'RE you'd she'S he'Ll", "don't won't can't", "'s 's 'S",
        "1", "12", "123", "1234", "12345678901234567890", "3.14159", "1,000,000", "-42",
        "2026-11-29T04:39:00Z", "0x7fffffff", "1e-10", "v1.2.3",
        "café naïve résumé façade", "Größe Straße", "Ελληνικά γράμματα", "Русский текст",
        "日本語のテキストです。", "中文文本，标点。", "한국어 텍스트", "العربية نص",
        "हिन्दी पाठ", "ไทย", "עברית", "emoji 👋🌍🚀", "👨‍👩‍👧‍👦 family", "🇫🇷🇩🇪",
        "e\u0301 combining", "zero\u200bwidth", "non\u00a0breaking", "ideographic\u3000space",
        "en\u2002space", "∑∫√∞≠≤", "©®™", "→←↑↓", "½¾", "ǅǈ", "ﬁ ligature", "ℕℤℚℝ",
        "<|begin_of_text|>Hello<|eot_id|>", "<|start_header_id|>user<|end_header_id|>\n\nHi",
        "text <|end_of_text|> more", "<|begin_of_text|><|begin_of_text|>",
        "<|not_special|>", "<|eot_id", "def f(x):\n    return x * 2\n",
        "for (int i = 0; i < n; ++i) { sum += a[i]; }", "#include <vector>\n",
        "if __name__ == '__main__':\n\tmain()", "SELECT * FROM t WHERE id = 7;",
        '{"key": [1, 2, 3], "nested": {"a": null}}', "<html><body>x</body></html>",
        "    indented\n        more\n", "x=1;y=2", "a\\b\\c", "$HOME/.config", "~user",
        "!!!???...", "---===+++", "((()))", "@#$%^&*", "\"quoted\" 'single'",
        "CamelCaseWord snake_case_word kebab-case-word", "ALLCAPS lowercase MiXeD",
        "The quick brown fox jumps over the lazy dog.", "a1b2c3", "abc123def456",
        "   \t  \n  \t ", "end.", ".start", "mid.dle", "\u00e9\u00e8\u00ea", "\x00\x01\x7f",
    ]
    rng = random.Random(seed)
    pools = [
        list("abcdefghijklmnopqrstuvwxyz"), list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
        list("0123456789"), list(" \t\n\r  "), list(".,;:!?'\"()[]{}<>-_=+*/\\|@#$%^&~`"),
        list("éèêëàâäôöûüçñßøåæœ"), list("αβγδεζηθλμπσω"), list("абвгдежзиклмнопрст"),
        list("日本語中文字漢"), list("한국어글"), list("مرحبا"), list("नमस्ते"),
        ["👋", "🌍", "🚀", "😀", "👨‍👩‍👧", "🇯🇵", "❤️", "✨"], ["'s", "'t", "'re", "'LL", "'d"],
        ["<|eot_id|>", "<|begin_of_text|>"], ["the", "of", "and", "token", "star", "mesh"],
    ]
    out = list(fixed)
    while len(out) < 560:
        n = rng.randint(1, 40)
        weights = [rng.random() for _ in pools]
        s = "".join(rng.choice(rng.choices(pools, weights)[0]) for _ in range(n))
        out.append(s)
    return out


def training_text() -> list[str]:
    """Text to train the tiny tokenizer on: Python's standard library sources, sorted."""
    root = os.path.dirname(os.__file__)
    texts = []
    for path in sorted(glob.glob(os.path.join(root, "*.py")))[:200]:
        with open(path, encoding="utf-8", errors="replace") as f:
            texts.append(f.read())
    return texts + corpus_strings(1)


def train_tiny_tokenizer() -> Tokenizer:
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB - len(SPECIALS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(training_text(), trainer)
    tok.add_special_tokens(SPECIALS)
    assert tok.get_vocab_size() == VOCAB, tok.get_vocab_size()
    bos = tok.token_to_id(SPECIALS[0])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{SPECIALS[0]} $A", special_tokens=[(SPECIALS[0], bos)])
    return tok


def make_model(seed: int, tok: Tokenizer) -> LlamaForCausalLM:
    cfg = LlamaConfig(
        vocab_size=VOCAB, hidden_size=128, intermediate_size=384, num_hidden_layers=4,
        num_attention_heads=8, num_key_value_heads=2, head_dim=64, max_position_embeddings=131072,
        rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=False,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
        bos_token_id=tok.token_to_id("<|begin_of_text|>"),
        eos_token_id=[tok.token_to_id("<|end_of_text|>"), tok.token_to_id("<|eot_id|>")],
        attention_bias=False, mlp_bias=False, hidden_act="silu")
    cfg._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif "embed_tokens" in name:
                p.copy_(torch.randn_like(p))
            else:  # Linear [out, in]: unit-variance activations, spread-out logits
                p.copy_(torch.randn_like(p) * (1.5 / p.shape[1] ** 0.5))
        # Round to bf16 so the f64 reference and the stored bf16 weights are the same numbers.
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).to(p.dtype))
    return model


def save_sharded(model, out_dir: str, shards: int) -> None:
    """bf16 safetensors in `shards` files with the HF index, as sharded hub checkpoints are."""
    model.config.save_pretrained(out_dir)
    state = {k: v.to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()}
    keys = list(state)
    per = (len(keys) + shards - 1) // shards
    weight_map, total = {}, 0
    for i in range(shards):
        name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: state[k] for k in keys[i * per:(i + 1) * per]}
        save_file(part, os.path.join(out_dir, name), metadata={"format": "pt"})
        for k, v in part.items():
            weight_map[k] = name
            total += v.numel() * v.element_size()
    with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)


@torch.no_grad()
def logits_f64(model, ids: list[int]) -> torch.Tensor:
    return model(torch.tensor([ids])).logits[0]


@torch.no_grad()
def greedy(model, ids: list[int], steps: int) -> tuple[list[int], float]:
    ids = list(ids)
    out, margin = [], float("inf")
    for _ in range(steps):
        last = logits_f64(model, ids)[-1]
        top = torch.topk(last, 2).values
        margin = min(margin, float(top[0] - top[1]))
        nxt = int(torch.argmax(last))
        out.append(nxt)
        ids.append(nxt)
    return out, margin


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--llama3-tokenizer", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=20261129)
    a = ap.parse_args()
    os.makedirs(os.path.join(a.out, "model"), exist_ok=True)
    torch.set_num_threads(min(8, os.cpu_count() or 1))

    corpus = corpus_strings(a.seed)
    tok = train_tiny_tokenizer()
    tok.save(os.path.join(a.out, "model", "tokenizer.json"))
    for name, t in (("llama3_1", Tokenizer.from_file(a.llama3_tokenizer)), ("tiny", tok)):
        with open(os.path.join(a.out, f"tokenizer_{name}.jsonl"), "w", encoding="utf-8") as f:
            for s in corpus:
                ids = t.encode(s, add_special_tokens=False).ids
                f.write(json.dumps({"text": s, "ids": ids}, ensure_ascii=False) + "\n")
        print(f"tokenizer {name}: {len(corpus)} strings, vocab {t.get_vocab_size()}")

    model = make_model(a.seed, tok)
    save_sharded(model, os.path.join(a.out, "model"), shards=2)
    model.to(torch.float64)

    rng = random.Random(a.seed)
    inputs = [
        tok.encode("Star Attention splits a long context into blocks.").ids,
        [rng.randrange(VOCAB) for _ in range(1)],
        [rng.randrange(VOCAB) for _ in range(33)],
        [rng.randrange(VOCAB) for _ in range(160)],
    ]
    tensors = {}
    for i, ids in enumerate(inputs):
        tensors[f"input_{i}"] = torch.tensor(ids, dtype=torch.int32)
        tensors[f"logits_{i}"] = logits_f64(model, ids).to(torch.float32).contiguous()
    save_file(tensors, os.path.join(a.out, "reference.safetensors"))

    runs = []
    for i, ids in enumerate(inputs[:1] + [[rng.randrange(VOCAB) for _ in range(12)]]):
        out, margin = greedy(model, ids, GREEDY_STEPS)
        runs.append({"prompt": ids, "greedy": out, "min_top2_margin": margin})
        print(f"greedy {i}: margin {margin:.4g}; text {tok.decode(out)!r}")
    with open(os.path.join(a.out, "greedy.json"), "w") as f:
        json.dump({"steps": GREEDY_STEPS, "runs": runs}, f, indent=1)
    print("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
