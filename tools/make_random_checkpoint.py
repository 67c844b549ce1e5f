#!/usr/bin/env python3
"""Writes a random-weight HF Llama checkpoint in the layout of a real one, for benchmarks.

    tools/make_random_checkpoint.py --config llama-3.1-8b --out /tmp/llama-3.1-8b-random --seed 1
    tools/make_random_checkpoint.py --config tiny --out /tmp/tinyck
    tools/make_random_checkpoint.py --config-json path/to/config.json --out DIR

What it writes into --out (as HF's save_pretrained would):
  config.json, generation_config.json,
  model.safetensors (one shard) or model-0000K-of-0000N.safetensors + model.safetensors.index.json,
  tokenizer.json, tokenizer_config.json.

Weights: bf16, normal(0, initializer_range), norm weights 1.0; tensor names and [out, in] shapes
as transformers' LlamaForCausalLM. Pure Python + numpy (no torch); the safetensors files are
written by hand. Each tensor is cut into fixed chunks, each chunk seeded from (--seed, tensor,
chunk), so the bytes depend on --seed only (not on --workers); worker processes fill the
chunks in parallel with pwrite, so memory stays at about 200 MB per worker (Llama-3.1-8B: 16 GB
in 11.5 s on the 16-core H200 machine).

Tokenizer: a byte-level BPE tokenizer.json with the Llama-3 pre-tokenizer, post-processor and
decoder: the 256 byte tokens, merges for common English words, filler tokens so that every id
below the first special token decodes (a random model emits any id), and the Llama-3 special
tokens as added tokens (at 128000.. when vocab_size >= 128256, else at the top of the vocab).
--tokenizer-from DIR copies a real tokenizer.json (+ tokenizer_config.json) instead.
"""
import argparse
import json
import multiprocessing as mp
import os
import shutil
import sys
import time

try:
    import numpy as np
except ImportError:  # the GPU machine has it; here: apt-get install python3-numpy
    sys.exit("make_random_checkpoint.py needs numpy (pip install numpy, or apt-get install python3-numpy)")

LLAMA_3_1_8B = {
    "architectures": ["LlamaForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 128000,
    "eos_token_id": [128001, 128008, 128009],
    "head_dim": 128,
    "hidden_act": "silu",
    "hidden_size": 4096,
    "initializer_range": 0.02,
    "intermediate_size": 14336,
    "max_position_embeddings": 131072,
    "mlp_bias": False,
    "model_type": "llama",
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_scaling": {
        "factor": 8.0,
        "high_freq_factor": 4.0,
        "low_freq_factor": 1.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3",
    },
    "rope_theta": 500000.0,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.43.0.dev0",
    "use_cache": True,
    "vocab_size": 128256,
}

# Same fields, test-sized; the special tokens land at the top of its 512 ids (bos/eos set below).
TINY = dict(LLAMA_3_1_8B, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16, vocab_size=512)

PRESETS = {"llama-3.1-8b": LLAMA_3_1_8B, "tiny": TINY}

CHUNK = 1 << 24  # elements per generated chunk; part of the seeding, so fixed
LLAMA3_FIRST_SPECIAL = 128000
LLAMA3_SPECIALS = 256

# ---------------------------------------------------------------------------- weights


def tensor_specs(cfg):
    """(name, shape, kind) in the order transformers registers them; kind 'normal' or 'ones'."""
    h, inter, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    heads = cfg["num_attention_heads"]
    kv = cfg.get("num_key_value_heads") or heads
    d = cfg.get("head_dim") or h // heads
    specs = [("model.embed_tokens.weight", (v, h), "normal")]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        specs += [
            (p + "self_attn.q_proj.weight", (heads * d, h), "normal"),
            (p + "self_attn.k_proj.weight", (kv * d, h), "normal"),
            (p + "self_attn.v_proj.weight", (kv * d, h), "normal"),
            (p + "self_attn.o_proj.weight", (h, heads * d), "normal"),
            (p + "mlp.gate_proj.weight", (inter, h), "normal"),
            (p + "mlp.up_proj.weight", (inter, h), "normal"),
            (p + "mlp.down_proj.weight", (h, inter), "normal"),
            (p + "input_layernorm.weight", (h,), "ones"),
            (p + "post_attention_layernorm.weight", (h,), "ones"),
        ]
    specs.append(("model.norm.weight", (h,), "ones"))
    if not cfg.get("tie_word_embeddings", False):
        specs.append(("lm_head.weight", (v, h), "normal"))
    return specs


def numel(shape):
    n = 1
    for s in shape:
        n *= s
    return n


def plan_shards(specs, max_bytes):
    """Splits the tensors, in order, into shards of at most max_bytes (a tensor larger than
    that gets a shard of its own), as transformers' save_pretrained does."""
    shards, cur, cur_bytes = [], [], 0
    for spec in specs:
        nbytes = numel(spec[1]) * 2
        if cur and cur_bytes + nbytes > max_bytes:
            shards.append(cur)
            cur, cur_bytes = [], 0
        cur.append(spec)
        cur_bytes += nbytes
    if cur:
        shards.append(cur)
    return shards


def safetensors_header(tensors):
    """The header bytes (length prefix included) and each tensor's offset in the data section."""
    header = {"__metadata__": {"format": "pt"}}
    offsets, offset = [], 0
    for name, shape, _ in tensors:
        nbytes = numel(shape) * 2
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offsets.append(offset)
        offset += nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data section starts 8-byte aligned
    return len(text).to_bytes(8, "little") + text, offsets, offset


def to_bf16(x):
    """float32 array -> uint16 bf16 bits, rounding to nearest even (in place on x)."""
    u = x.view(np.uint32)
    lsb = u >> 16
    lsb &= 1
    u += lsb
    u += 0x7FFF
    u >>= 16
    return u.astype(np.uint16)


BF16_ONE = 0x3F80


def fill_chunk(job):
    """Worker: generates one chunk and writes it at its place in the file."""
    path, file_offset, seed, tensor_index, chunk_index, count, kind, std = job
    if kind == "ones":
        out = np.full(count, BF16_ONE, dtype=np.uint16)
    else:
        rng = np.random.default_rng([seed, tensor_index, chunk_index])
        x = rng.standard_normal(count, dtype=np.float32)
        x *= np.float32(std)
        out = to_bf16(x)
        del x
    data = memoryview(out).cast("B")
    fd = os.open(path, os.O_WRONLY)
    try:
        done = 0
        while done < len(data):
            done += os.pwrite(fd, data[done:], file_offset + done)
    finally:
        os.close(fd)
    return len(data)


def write_weights(cfg, out_dir, seed, shard_bytes, workers):
    specs = tensor_specs(cfg)
    tensor_index = {name: i for i, (name, _, _) in enumerate(specs)}
    std = float(cfg.get("initializer_range", 0.02))
    shards = plan_shards(specs, shard_bytes)
    n = len(shards)
    names = ["model.safetensors"] if n == 1 else [f"model-{k + 1:05d}-of-{n:05d}.safetensors" for k in range(n)]
    jobs, files, weight_map, total = [], [], {}, 0
    for shard, name in zip(shards, names):
        header, offsets, data_bytes = safetensors_header(shard)
        tmp = os.path.join(out_dir, name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(header)
            f.truncate(len(header) + data_bytes)
        files.append((tmp, os.path.join(out_dir, name), len(header) + data_bytes))
        for (tname, shape, kind), off in zip(shard, offsets):
            weight_map[tname] = name
            count = numel(shape)
            for c, start in enumerate(range(0, count, CHUNK)):
                m = min(CHUNK, count - start)
                jobs.append((tmp, len(header) + off + 2 * start, seed, tensor_index[tname], c, m, kind, std))
        total += data_bytes
    jobs.sort(key=lambda j: -j[5])  # big chunks first: better balance at the end
    done = 0
    if workers <= 1 or len(jobs) == 1:
        for job in jobs:
            done += fill_chunk(job)
    else:
        with mp.get_context("fork").Pool(min(workers, len(jobs))) as pool:
            step = max(total // 20, 1)
            mark = step
            for nbytes in pool.imap_unordered(fill_chunk, jobs, chunksize=1):
                done += nbytes
                if done >= mark and total >= 1 << 30:
                    print(f"  {done / 1e9:.1f} / {total / 1e9:.1f} GB", flush=True)
                    mark += step
    assert done == total, (done, total)
    for tmp, final, _ in files:
        os.replace(tmp, final)
    if n > 1:
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
            json.dump(index, f, indent=2)
            f.write("\n")
    return [(final, size) for _, final, size in files], total, len(specs)


# ---------------------------------------------------------------------------- tokenizer


def byte_to_unicode():
    """GPT-2's ByteLevel alphabet: byte -> printable character. Printable Latin-1 bytes stand
    for themselves; the rest are given code points from 256 up, in byte order."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + \
        list(range(ord("\xae"), ord("\xff") + 1))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    # Token ids follow GPT-2's order: the kept bytes first, then the others.
    order = keep + [b for b in range(256) if b not in keep]
    return table, order


def encode_bytes(text, table):
    return "".join(table[b] for b in text.encode("utf-8"))


COMMON_WORDS = """
the of and to in a is that for it as was with be by on not he I this are or his from at which
but have an they you were her she there been one all we their has would when if so no more
what up out who them some can said will my into time about than only other new could these two
may first then do any like its now over such our man me even most made after also did many
before must through back years where much your way well down should because each just those
people how too little state good very make world still own see men work long get here between
both life being under never day same another know while last might us great old year off come
since against go came right used take three states himself few house use during without again
place American around however home small found Mrs thought went say part once general high upon
school every don't does got united left number course war until always away something fact
though water less public put think almost hand enough far took head yet government system better
set told nothing night end why called didn't eyes find going look asked later knew point next
program city business give group toward young days let room president side social given present
several order national possible rather second face per among form important often things looking
early white case John become large big need four within felt along children saw best church ever
least power development light thing seemed family interest want members mind country area others
although turned done open God service certain kind problem began different door thus help sense
means whole matter perhaps itself York times law human line above name example action company
hands local show whether five history gave today either act feet across taken past quite anything
having seen death experience body word half really week field car words already themselves
information tion ing ment ness able ed er est ly re un in on an at en es al ic th ou
""".split()

WHITESPACE_RUNS = ["  ", "   ", "    ", "        ", "\n\n", "\n\n\n", " \n", "\t\t"]

SPECIAL_HEAD = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>",
                "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"]
BOS_OFFSET, EOS_OFFSETS = 0, (1, 8, 9)  # <|begin_of_text|>; <|end_of_text|>, <|eom_id|>, <|eot_id|>

LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def special_names(count):
    names = SPECIAL_HEAD[:count]
    names += [f"<|reserved_special_token_{3 + j}|>" for j in range(count - len(names))]
    return names


def special_layout(vocab_size):
    """(first special id, number of specials): Llama-3's 128000..128255 when the vocab has
    room (any ids past 128255 become more reserved specials), else the top of the vocab."""
    if vocab_size >= LLAMA3_FIRST_SPECIAL + LLAMA3_SPECIALS:
        return LLAMA3_FIRST_SPECIAL, vocab_size - LLAMA3_FIRST_SPECIAL
    count = min(LLAMA3_SPECIALS, max(len(SPECIAL_HEAD), vocab_size // 32))
    if vocab_size - count < 256:
        raise SystemExit(f"vocab_size {vocab_size} is too small: need 256 byte tokens + {count} special tokens")
    return vocab_size - count, count


def word_merges(table, budget):
    """Merges that build common English words (and ' word') one character at a time, shortest
    results first, at most `budget` of them; any prefix of the list is closed (each merge's
    parts are bytes or results of earlier merges)."""
    seen, chains = set(), []
    texts = [" " + w for w in COMMON_WORDS] + COMMON_WORDS + [" " + w.capitalize() for w in COMMON_WORDS[:120]]
    texts += WHITESPACE_RUNS
    for t in texts:
        chars = [table[b] for b in t.encode("utf-8")]
        for i in range(1, len(chars)):
            left, right = "".join(chars[:i]), chars[i]
            merged = left + right
            if merged not in seen:
                seen.add(merged)
                chains.append((len(chars[:i + 1]), len(chains), left, right))
    chains.sort()
    return [(left, right) for _, _, left, right in chains[:budget]]


def filler_tokens(count, taken):
    """`count` distinct word-like tokens (' ab', ' abc', ...) that are not in `taken`."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    out = []

    def words(n):
        if n == 0:
            yield ""
            return
        for head in words(n - 1):
            for c in letters:
                yield head + c

    n = 2
    while len(out) < count:
        for w in words(n):
            tok = "\u0120" + w  # 'Ġ': a leading space
            if tok not in taken:
                out.append(tok)
                if len(out) == count:
                    break
        n += 1
    return out


def build_tokenizer(vocab_size):
    """tokenizer.json (as a dict), the special token names, and the bos / eos ids."""
    table, order = byte_to_unicode()
    first_special, n_special = special_layout(vocab_size)
    vocab = {table[b]: i for i, b in enumerate(order)}
    merges = word_merges(table, first_special - len(vocab))
    for left, right in merges:
        vocab[left + right] = len(vocab)
    for tok in filler_tokens(first_special - len(vocab), vocab):
        vocab[tok] = len(vocab)
    assert len(vocab) == first_special and sorted(vocab.values()) == list(range(first_special))
    names = special_names(n_special)
    added = [{"id": first_special + i, "content": name, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, name in enumerate(names)]
    bos = names[BOS_OFFSET]
    tok = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_SPLIT}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
        "post_processor": {"type": "Sequence", "processors": [
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
            {"type": "TemplateProcessing",
             "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
             "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                      {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
             "special_tokens": {bos: {"id": bos, "ids": [first_special + BOS_OFFSET], "tokens": [bos]}}}]},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": True,
                  "vocab": vocab, "merges": [[left, right] for left, right in merges]},
    }
    eos = [first_special + o for o in EOS_OFFSETS]
    return tok, names, first_special, first_special + BOS_OFFSET, eos, len(merges)


def tokenizer_config(names, first_special, bos_id, eos_id, max_len):
    return {
        "added_tokens_decoder": {str(first_special + i): {
            "content": name, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
            "special": True} for i, name in enumerate(names)},
        "bos_token": names[bos_id - first_special],
        "clean_up_tokenization_spaces": True,
        "eos_token": names[eos_id - first_special],
        "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": max_len,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }


def write_json(path, obj, indent=2, ensure_ascii=True):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=indent, ensure_ascii=ensure_ascii)
        f.write("\n")
    return os.path.getsize(path)


# ---------------------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--config", choices=sorted(PRESETS), default="llama-3.1-8b", help="built-in config")
    src.add_argument("--config-json", help="take this config.json instead (a LlamaForCausalLM config)")
    ap.add_argument("--out", required=True, help="output folder (created; old weights in it are replaced)")
    ap.add_argument("--seed", type=int, default=0, help="weights depend on this only")
    ap.add_argument("--shard-gb", type=float, default=5.0, help="max shard size in GB (1e9 bytes), as HF's '5GB'")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes generating weights")
    ap.add_argument("--tokenizer-from", help="copy tokenizer.json (and tokenizer_config.json) from this folder "
                    "instead of writing the synthetic one, e.g. build/testdata/llama3_1")
    args = ap.parse_args()

    if args.config_json:
        with open(args.config_json) as f:
            cfg = json.load(f)
        source = args.config_json
    else:
        cfg = json.loads(json.dumps(PRESETS[args.config]))
        source = f"preset {args.config}"
    if cfg.get("model_type", "llama") != "llama":
        sys.exit(f"{source}: model_type {cfg.get('model_type')!r}; this writes Llama checkpoints only")
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size"):
        if not isinstance(cfg.get(key), int) or cfg[key] <= 0:
            sys.exit(f"{source}: {key} must be a positive integer")
    vocab_size = cfg["vocab_size"]

    os.makedirs(args.out, exist_ok=True)
    for name in os.listdir(args.out):  # a stale model.safetensors would shadow a new index
        if name.startswith("model") and (name.endswith(".safetensors") or name.endswith(".safetensors.tmp")
                                         or name == "model.safetensors.index.json"):
            os.remove(os.path.join(args.out, name))
    t0 = time.perf_counter()
    written = []

    if args.tokenizer_from:
        src_tok = os.path.join(args.tokenizer_from, "tokenizer.json")
        with open(src_tok, encoding="utf-8") as f:
            tj = json.load(f)
        ids = list(tj["model"]["vocab"].values()) + [t["id"] for t in tj.get("added_tokens", [])]
        if max(ids) >= vocab_size:
            sys.exit(f"{src_tok} has token id {max(ids)}, not below vocab_size {vocab_size}")
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            p = os.path.join(args.tokenizer_from, name)
            if os.path.isfile(p):
                shutil.copyfile(p, os.path.join(args.out, name))
                written.append((name, os.path.getsize(p)))
        tok_note = f"copied from {args.tokenizer_from}"
    else:
        tok, names, first_special, bos_id, eos_ids, n_merges = build_tokenizer(vocab_size)
        # The config's special ids must be the tokenizer's; a preset's or a Llama-3 config's are.
        if cfg.get("bos_token_id") != bos_id or cfg.get("eos_token_id") != eos_ids:
            if args.config_json:
                print(f"note: bos/eos ids set to {bos_id} / {eos_ids} to match the synthetic tokenizer "
                      f"(the config had {cfg.get('bos_token_id')} / {cfg.get('eos_token_id')})")
            cfg["bos_token_id"], cfg["eos_token_id"] = bos_id, eos_ids
        size = write_json(os.path.join(args.out, "tokenizer.json"), tok, indent=None, ensure_ascii=False)
        written.append(("tokenizer.json", size))
        tc = tokenizer_config(names, first_special, bos_id, eos_ids[-1], cfg.get("max_position_embeddings", 131072))
        written.append(("tokenizer_config.json", write_json(os.path.join(args.out, "tokenizer_config.json"), tc)))
        tok_note = (f"synthetic byte-level BPE: {first_special} tokens (256 bytes, {n_merges} merges, "
                    f"{first_special - 256 - n_merges} fillers) + {len(names)} specials at {first_special}..")

    written.append(("config.json", write_json(os.path.join(args.out, "config.json"), dict(sorted(cfg.items())))))
    gen = {"bos_token_id": cfg.get("bos_token_id"), "do_sample": True, "eos_token_id": cfg.get("eos_token_id"),
           "temperature": 0.6, "top_p": 0.9, "transformers_version": cfg.get("transformers_version", "4.43.0.dev0")}
    written.append(("generation_config.json", write_json(os.path.join(args.out, "generation_config.json"), gen)))
    t_meta = time.perf_counter() - t0

    t1 = time.perf_counter()
    shards, total, n_tensors = write_weights(cfg, args.out, args.seed, int(args.shard_gb * 1e9), args.workers)
    if len(shards) > 1:
        written.append(("model.safetensors.index.json",
                        os.path.getsize(os.path.join(args.out, "model.safetensors.index.json"))))
    t_weights = time.perf_counter() - t1
    written += [(os.path.basename(p), s) for p, s in shards]

    for name, size in written:
        print(f"  {name:<40} {size:>15,d} bytes")
    params = total // 2
    print(f"tokenizer: {tok_note}")
    count = f"{params / 1e9:.2f} B" if params >= 1e9 else f"{params / 1e6:.2f} M"
    print(f"wrote {args.out}: {source}, {count} params in {n_tensors} tensors, "
          f"{len(shards)} shard(s), {total:,d} bytes of bf16 weights")
    print(f"seconds: {t_weights:.1f} weights ({total / max(t_weights, 1e-9) / 1e9:.2f} GB/s, "
          f"{args.workers} workers, seed {args.seed}) + {t_meta:.1f} tokenizer/config")


if __name__ == "__main__":
    main()
