#!/usr/bin/env python3
"""Seeded synthetic long-context tasks in the style of RULER's download-free tasks.

Pure Python, no dependencies: the trainer (train.py) and the evaluator use it, and
tools/train/README.md documents every template so that `starmesh eval` can port it.

An instance is a dict:
    task     one of TASKS
    context  the document (tokenized with BOS, as `starmesh generate --context` does)
    query    the question, tokenized apart without BOS and appended after the context
    answer   the exact expected answer; the model emits " " + answer, then <|eot_id|>

Lengths are asked for in tokens of the starmesh-needle tokenizer, estimated with
`estimate_tokens` (every word of the lists below is one token of that tokenizer, every
digit and punctuation mark one token); the real count is within a few percent.

    python3 tools/train/tasks.py --task niah_single --tokens 512 --n 2 --seed 1
prints instances as JSON lines.
"""
import argparse
import json
import math
import random
import re

TASKS = ["niah_single", "niah_multikey", "niah_multivalue", "vt", "cwe", "fwe"]

# Training mixture (probabilities).
TASK_WEIGHTS = {"niah_single": 0.25, "niah_multikey": 0.20, "niah_multivalue": 0.15,
                "vt": 0.15, "cwe": 0.125, "fwe": 0.125}

ADJECTIVES = (
    "quiet silver ancient bright hidden golden frozen gentle hollow lonely narrow"
    " rapid scarlet shallow silent steady sudden tender violet wild amber bitter"
    " brave calm clever crimson distant dusty eager faint fierce fragile grand green"
    " humble icy ivory jolly lively lucky mellow misty modest noble pale proud"
    " rough royal rusty sacred sharp shy sleepy smooth solemn sour spotted stormy"
    " sunny swift tall tiny vivid warm weary").split()
NOUNS = (
    "harbor falcon river mountain lantern garden meadow forest castle island valley"
    " bridge tower village canyon desert glacier orchard prairie lagoon beacon"
    " cottage fountain compass anchor barrel basket blanket bottle candle carpet"
    " cellar chimney cloud comet copper crystal dragon engine feather fiddle"
    " harvest helmet hammer kettle ladder lemon marble mirror needle ocean"
    " otter owl painter parrot pebble pepper pilot planet pocket pony quarry rabbit"
    " raven ribbon rocket saddle sailor scholar shadow shell shepherd singer"
    " spider spring squirrel statue stone storm sugar summer tiger timber tulip"
    " tunnel turtle velvet violin wagon walnut whale willow window winter wizard"
    " wolf meadowlark badger beetle cedar clover coral dolphin ember fox goose heron"
    " juniper lily lynx maple moth nectar oak pine poppy salmon sparrow thistle"
    " thunder trout walrus wren").split()
VERBS = (
    "watched carried followed painted visited crossed guarded admired found"
    " measured opened repaired cleaned counted described noticed pulled pushed"
    " lifted dropped borrowed returned shared traded chased greeted praised"
    " remembered forgot studied built").split()
PREPOSITIONS = "near under beside behind above across around beyond inside below".split()
# fwe's coded words (pseudo-words, none of them in the lists above).
CODED = (
    "zorp blick quan frell dax mibble tusk vorn glim prax snoot wembly yarp kib"
    " drell flonk grib hask jov lurp mox nib plov quib rask skiv tib vex wug yib"
    " zaf brin clum dorf ekko fizz gork hoob ilk jeb").split()

NUMBER_LO, NUMBER_HI = 100000, 999999  # needle values: 6 digits
VT_LO, VT_HI = 10000, 99999            # variable-tracking values: 5 digits

PREAMBLE = {
    "niah": "Some special magic numbers are hidden in the following text. Remember them.\n",
    "vt": "Track the chains of variable assignments hidden in the following text.\n",
    "cwe": "Below is a numbered list of words. Some words appear more often than others.\n",
    "fwe": "Read the following coded text and find the coded words that appear most often.\n",
}
NEEDLE = "The special magic number for {key} is {value}."
Q_NIAH = "\nQuestion: What is the special magic number for {key}?\nAnswer:"
Q_MULTIVALUE = "\nQuestion: What are all the special magic numbers for {key}?\nAnswer:"
VT_FIRST = "VAR {name} = {value}."
VT_NEXT = "VAR {name} = {prev}."
Q_VT = "\nQuestion: Which variables are assigned the value {value}?\nAnswer:"
Q_CWE = "\nQuestion: What are the 3 most common words in the list above?\nAnswer:"
Q_FWE = "\nQuestion: What are the 3 most frequent coded words in the text above?\nAnswer:"
ANSWER_SEP = ", "

# Filler sentences: the haystack. {adj}/{adj2} from ADJECTIVES, {noun}/{noun2}/{noun3} from
# NOUNS, {verb} from VERBS, {prep} from PREPOSITIONS, each drawn independently.
FILLER_TEMPLATES = [
    "The {adj} {noun} {verb} the {noun2}.",
    "One {noun} {verb} the {adj} {noun2} {prep} the {noun3}.",
    "The {noun} was {adj} and the {noun2} was {adj2}.",
    "Nobody {verb} the {adj} {noun} {prep} the {noun2}.",
    "Every {noun} {prep} the {noun2} is {adj}.",
    "Yesterday the {noun} {verb} the {adj} {noun2}.",
]

_TOKEN_RE = re.compile(r"[A-Za-z]+|\d| (?=\d)|[^\sA-Za-z\d]|\n")


def estimate_tokens(text: str) -> int:
    """Words, digits, punctuation marks, newlines and a space before a digit: one token each."""
    return len(_TOKEN_RE.findall(text))


def filler_sentence(rng: random.Random) -> str:
    t = FILLER_TEMPLATES[rng.randrange(len(FILLER_TEMPLATES))]
    return t.format(adj=rng.choice(ADJECTIVES), adj2=rng.choice(ADJECTIVES),
                    noun=rng.choice(NOUNS), noun2=rng.choice(NOUNS), noun3=rng.choice(NOUNS),
                    verb=rng.choice(VERBS), prep=rng.choice(PREPOSITIONS))


def haystack(rng: random.Random, budget: int) -> list[str]:
    """Filler sentences until their estimated tokens reach `budget`."""
    out, n = [], 0
    while n < budget:
        s = filler_sentence(rng)
        out.append(s)
        n += estimate_tokens(s)
    return out


def insert_sorted(rng: random.Random, sentences: list[str], needles: list[str]) -> str:
    """Puts the needles at distinct random sentence boundaries, keeping their order."""
    slots = sorted(rng.sample(range(len(sentences) + 1), len(needles)))
    out, j = [], 0
    for i in range(len(sentences) + 1):
        while j < len(needles) and slots[j] == i:
            out.append(needles[j])
            j += 1
        if i < len(sentences):
            out.append(sentences[i])
    return " ".join(out)


def distinct_keys(rng: random.Random, n: int) -> list[str]:
    keys = set()
    while len(keys) < n:
        keys.add(f"{rng.choice(ADJECTIVES)}-{rng.choice(NOUNS)}")
    return rng.sample(sorted(keys), n)


def distinct_numbers(rng: random.Random, n: int, lo: int, hi: int) -> list[int]:
    vals = set()
    while len(vals) < n:
        vals.add(rng.randint(lo, hi))
    return rng.sample(sorted(vals), n)


def niah(rng: random.Random, tokens: int, task: str) -> dict:
    if task == "niah_single":
        keys, n_values = distinct_keys(rng, 1), 1
    elif task == "niah_multikey":
        keys, n_values = distinct_keys(rng, rng.randint(2, 6)), 1
    else:  # niah_multivalue
        keys, n_values = distinct_keys(rng, 1), rng.randint(2, 4)
    asked = keys[0]
    values = distinct_numbers(rng, len(keys) + n_values - 1, NUMBER_LO, NUMBER_HI)
    pairs = [(asked, v) for v in values[:n_values]] + list(zip(keys[1:], values[n_values:]))
    rng.shuffle(pairs)
    needles = [NEEDLE.format(key=k, value=v) for k, v in pairs]
    budget = tokens - estimate_tokens(PREAMBLE["niah"]) - sum(map(estimate_tokens, needles))
    context = PREAMBLE["niah"] + insert_sorted(rng, haystack(rng, budget), needles)
    asked_values = [str(v) for k, v in pairs if k == asked]  # document order
    query = (Q_NIAH if task != "niah_multivalue" else Q_MULTIVALUE).format(key=asked)
    return {"task": task, "context": context, "query": query, "answer": ANSWER_SEP.join(asked_values)}


def var_names(rng: random.Random, n: int) -> list[str]:
    names = set()
    while len(names) < n:
        names.add("".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(5)))
    return rng.sample(sorted(names), n)


def vt(rng: random.Random, tokens: int) -> dict:
    hops = rng.randint(2, 4)  # names per chain: hops + 1
    names = var_names(rng, 2 * (hops + 1))
    values = distinct_numbers(rng, 2, VT_LO, VT_HI)
    chains = []
    for c in range(2):  # chain 0 is asked, chain 1 is a distractor
        ns = names[c * (hops + 1):(c + 1) * (hops + 1)]
        stmts = [VT_FIRST.format(name=ns[0], value=values[c])]
        stmts += [VT_NEXT.format(name=ns[i], prev=ns[i - 1]) for i in range(1, hops + 1)]
        chains.append((ns, stmts))
    # Interleave the two chains, each in its own order: a random merge.
    order = [0] * (hops + 1) + [1] * (hops + 1)
    rng.shuffle(order)
    idx, needles = [0, 0], []
    for c in order:
        needles.append(chains[c][1][idx[c]])
        idx[c] += 1
    budget = tokens - estimate_tokens(PREAMBLE["vt"]) - sum(map(estimate_tokens, needles))
    context = PREAMBLE["vt"] + insert_sorted(rng, haystack(rng, budget), needles)
    return {"task": "vt", "context": context, "query": Q_VT.format(value=values[0]),
            "answer": ANSWER_SEP.join(chains[0][0])}


def cwe(rng: random.Random, tokens: int) -> dict:
    pool = ADJECTIVES + NOUNS
    body = tokens - estimate_tokens(PREAMBLE["cwe"])
    # Item i is "{i}. {word}": digits of i + "." + word (+ the space before the next number).
    n, used = 0, 0
    while True:
        cost = len(str(n + 1)) + 3
        if used + cost > body:
            break
        n, used = n + 1, used + cost
    n = max(n, 12)
    common_count = max(4, round(0.08 * n))
    chosen = rng.sample(pool, len(pool))
    common, rest = chosen[:3], chosen[3:]
    words = common * common_count
    k = n - len(words)
    words += [rest[i % len(rest)] for i in range(k)]  # each other word ceil(k/len(rest)) times at most
    rng.shuffle(words)
    first = []
    for w in words:
        if w in common and w not in first:
            first.append(w)
    context = PREAMBLE["cwe"] + " ".join(f"{i + 1}. {w}" for i, w in enumerate(words))
    return {"task": "cwe", "context": context, "query": Q_CWE, "answer": ANSWER_SEP.join(first)}


def fwe(rng: random.Random, tokens: int) -> dict:
    n = max(100, tokens - estimate_tokens(PREAMBLE["fwe"]))
    words = rng.sample(CODED, len(CODED))  # words[r] has rank r + 1
    harmonic = sum(1.0 / r for r in range(1, len(words) + 1))
    counts = [max(1, round(n / (r * harmonic))) for r in range(1, len(words) + 1)]
    assert counts[0] > counts[1] > counts[2] > counts[3], counts
    text = [w for w, c in zip(words, counts) for _ in range(c)]
    rng.shuffle(text)
    context = PREAMBLE["fwe"] + " ".join(text)
    return {"task": "fwe", "context": context, "query": Q_FWE, "answer": ANSWER_SEP.join(words[:3])}


def make_instance(task: str, rng: random.Random, tokens: int) -> dict:
    """One instance of `task` whose context is about `tokens` tokens long."""
    if task.startswith("niah"):
        return niah(rng, tokens, task)
    return {"vt": vt, "cwe": cwe, "fwe": fwe}[task](rng, tokens)


def sample_task(rng: random.Random) -> str:
    return rng.choices(TASKS, weights=[TASK_WEIGHTS[t] for t in TASKS])[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task", choices=TASKS + ["mix"], default="mix")
    ap.add_argument("--tokens", type=int, default=1024)
    ap.add_argument("--n", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    for _ in range(a.n):
        task = sample_task(rng) if a.task == "mix" else a.task
        inst = make_instance(task, rng, a.tokens)
        inst["estimated_tokens"] = estimate_tokens(inst["context"])
        print(json.dumps(inst))


if __name__ == "__main__":
    main()
