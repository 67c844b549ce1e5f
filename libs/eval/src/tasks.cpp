#include "starmesh/eval/tasks.hpp"

#include <algorithm>
#include <cmath>
#include <set>

namespace starmesh::eval {
namespace {

// The word lists of tools/train/tasks.py, verbatim: every word is one token of the
// starmesh-needle tokenizer, so instances are exactly as long as planned.
const std::vector<std::string> kAdjectives = {
    "quiet", "silver",  "ancient", "bright",  "hidden",  "golden", "frozen", "gentle", "hollow", "lonely",  "narrow",
    "rapid", "scarlet", "shallow", "silent",  "steady",  "sudden", "tender", "violet", "wild",   "amber",   "bitter",
    "brave", "calm",    "clever",  "crimson", "distant", "dusty",  "eager",  "faint",  "fierce", "fragile", "grand",
    "green", "humble",  "icy",     "ivory",   "jolly",   "lively", "lucky",  "mellow", "misty",  "modest",  "noble",
    "pale",  "proud",   "rough",   "royal",   "rusty",   "sacred", "sharp",  "shy",    "sleepy", "smooth",  "solemn",
    "sour",  "spotted", "stormy",  "sunny",   "swift",   "tall",   "tiny",   "vivid",  "warm",   "weary",
};
const std::vector<std::string> kNouns = {
    "harbor", "falcon",   "river",    "mountain", "lantern", "garden",   "meadow",     "forest",  "castle",  "island",
    "valley", "bridge",   "tower",    "village",  "canyon",  "desert",   "glacier",    "orchard", "prairie", "lagoon",
    "beacon", "cottage",  "fountain", "compass",  "anchor",  "barrel",   "basket",     "blanket", "bottle",  "candle",
    "carpet", "cellar",   "chimney",  "cloud",    "comet",   "copper",   "crystal",    "dragon",  "engine",  "feather",
    "fiddle", "harvest",  "helmet",   "hammer",   "kettle",  "ladder",   "lemon",      "marble",  "mirror",  "needle",
    "ocean",  "otter",    "owl",      "painter",  "parrot",  "pebble",   "pepper",     "pilot",   "planet",  "pocket",
    "pony",   "quarry",   "rabbit",   "raven",    "ribbon",  "rocket",   "saddle",     "sailor",  "scholar", "shadow",
    "shell",  "shepherd", "singer",   "spider",   "spring",  "squirrel", "statue",     "stone",   "storm",   "sugar",
    "summer", "tiger",    "timber",   "tulip",    "tunnel",  "turtle",   "velvet",     "violin",  "wagon",   "walnut",
    "whale",  "willow",   "window",   "winter",   "wizard",  "wolf",     "meadowlark", "badger",  "beetle",  "cedar",
    "clover", "coral",    "dolphin",  "ember",    "fox",     "goose",    "heron",      "juniper", "lily",    "lynx",
    "maple",  "moth",     "nectar",   "oak",      "pine",    "poppy",    "salmon",     "sparrow", "thistle", "thunder",
    "trout",  "walrus",   "wren",
};
const std::vector<std::string> kVerbs = {
    "watched", "carried",  "followed", "painted",    "visited",  "crossed",  "guarded",   "admired",
    "found",   "measured", "opened",   "repaired",   "cleaned",  "counted",  "described", "noticed",
    "pulled",  "pushed",   "lifted",   "dropped",    "borrowed", "returned", "shared",    "traded",
    "chased",  "greeted",  "praised",  "remembered", "forgot",   "studied",  "built",
};
const std::vector<std::string> kPrepositions = {
    "near", "under", "beside", "behind", "above", "across", "around", "beyond", "inside", "below",
};
const std::vector<std::string> kCoded = {
    "zorp",  "blick",  "quan", "frell", "dax",   "mibble", "tusk", "vorn", "glim", "prax",
    "snoot", "wembly", "yarp", "kib",   "drell", "flonk",  "grib", "hask", "jov",  "lurp",
    "mox",   "nib",    "plov", "quib",  "rask",  "skiv",   "tib",  "vex",  "wug",  "yib",
    "zaf",   "brin",   "clum", "dorf",  "ekko",  "fizz",   "gork", "hoob", "ilk",  "jeb",
};

constexpr int64_t kNumberLo = 100000, kNumberHi = 999999;  // needle values: 6 digits
constexpr int64_t kVtLo = 10000, kVtHi = 99999;            // variable-tracking values: 5 digits
constexpr const char* kAnswerSep = ", ";

const char* preamble(Task t) {
  switch (t) {
    case Task::vt:
      return "Track the chains of variable assignments hidden in the following text.\n";
    case Task::cwe:
      return "Below is a numbered list of words. Some words appear more often than others.\n";
    case Task::fwe:
      return "Read the following coded text and find the coded words that appear most often.\n";
    default:
      return "Some special magic numbers are hidden in the following text. Remember them.\n";
  }
}

template <class T>
const T& pick(const std::vector<T>& v, std::mt19937_64& rng) {
  return v[std::uniform_int_distribution<size_t>(0, v.size() - 1)(rng)];
}
int64_t uniform(int64_t lo, int64_t hi, std::mt19937_64& rng) {
  return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
}

std::string filler_sentence(std::mt19937_64& rng) {
  const std::string adj = pick(kAdjectives, rng), adj2 = pick(kAdjectives, rng), noun = pick(kNouns, rng),
                    noun2 = pick(kNouns, rng), noun3 = pick(kNouns, rng), verb = pick(kVerbs, rng),
                    prep = pick(kPrepositions, rng);
  switch (uniform(0, 5, rng)) {
    case 0:
      return "The " + adj + " " + noun + " " + verb + " the " + noun2 + ".";
    case 1:
      return "One " + noun + " " + verb + " the " + adj + " " + noun2 + " " + prep + " the " + noun3 + ".";
    case 2:
      return "The " + noun + " was " + adj + " and the " + noun2 + " was " + adj2 + ".";
    case 3:
      return "Nobody " + verb + " the " + adj + " " + noun + " " + prep + " the " + noun2 + ".";
    case 4:
      return "Every " + noun + " " + prep + " the " + noun2 + " is " + adj + ".";
    default:
      return "Yesterday the " + noun + " " + verb + " the " + adj + " " + noun2 + ".";
  }
}

// Filler sentences until their estimated tokens reach `budget`.
std::vector<std::string> haystack(std::mt19937_64& rng, int64_t budget) {
  std::vector<std::string> out;
  for (int64_t n = 0; n < budget;) {
    out.push_back(filler_sentence(rng));
    n += estimate_tokens(out.back());
  }
  return out;
}

// Puts the needles at distinct random sentence boundaries, keeping their order.
std::string insert_sorted(std::mt19937_64& rng, const std::vector<std::string>& sentences,
                          const std::vector<std::string>& needles) {
  std::vector<size_t> slots(sentences.size() + 1);
  for (size_t i = 0; i < slots.size(); ++i) slots[i] = i;
  std::shuffle(slots.begin(), slots.end(), rng);
  slots.resize(std::min(needles.size(), slots.size()));
  std::sort(slots.begin(), slots.end());
  std::string out;
  auto add = [&](const std::string& s) { out += (out.empty() ? "" : " ") + s; };
  size_t j = 0;
  for (size_t i = 0; i <= sentences.size(); ++i) {
    while (j < slots.size() && slots[j] == i) add(needles[j++]);
    if (i < sentences.size()) add(sentences[i]);
  }
  while (j < needles.size()) add(needles[j++]);  // more needles than boundaries (tiny budgets)
  return out;
}

std::vector<std::string> distinct_keys(std::mt19937_64& rng, size_t n) {
  std::set<std::string> keys;
  while (keys.size() < n) keys.insert(pick(kAdjectives, rng) + "-" + pick(kNouns, rng));
  std::vector<std::string> out(keys.begin(), keys.end());
  std::shuffle(out.begin(), out.end(), rng);
  return out;
}

std::vector<int64_t> distinct_numbers(std::mt19937_64& rng, size_t n, int64_t lo, int64_t hi) {
  std::set<int64_t> vals;
  while (vals.size() < n) vals.insert(uniform(lo, hi, rng));
  std::vector<int64_t> out(vals.begin(), vals.end());
  std::shuffle(out.begin(), out.end(), rng);
  return out;
}

std::string join(const std::vector<std::string>& parts, const char* sep) {
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : sep) + p;
  return out;
}

std::string needle(const std::string& key, int64_t value) {
  return "The special magic number for " + key + " is " + std::to_string(value) + ".";
}

int64_t tokens_of(const std::vector<std::string>& texts) {
  int64_t n = 0;
  for (const auto& t : texts) n += estimate_tokens(t);
  return n;
}

Instance niah(Task task, int64_t tokens, std::mt19937_64& rng) {
  size_t n_keys = 1, n_values = 1;
  if (task == Task::niah_multikey) n_keys = size_t(uniform(2, 6, rng));
  if (task == Task::niah_multivalue) n_values = size_t(uniform(2, 4, rng));
  const auto keys = distinct_keys(rng, n_keys);
  const std::string& asked = keys[0];
  const auto values = distinct_numbers(rng, n_keys + n_values - 1, kNumberLo, kNumberHi);
  std::vector<std::pair<std::string, int64_t>> pairs;
  for (size_t i = 0; i < n_values; ++i) pairs.emplace_back(asked, values[i]);
  for (size_t i = 1; i < n_keys; ++i) pairs.emplace_back(keys[i], values[n_values + i - 1]);
  std::shuffle(pairs.begin(), pairs.end(), rng);
  std::vector<std::string> needles, asked_values;
  for (const auto& [k, v] : pairs) {
    needles.push_back(needle(k, v));
    if (k == asked) asked_values.push_back(std::to_string(v));  // document order
  }
  const std::string pre = preamble(task);
  const int64_t budget = tokens - estimate_tokens(pre) - tokens_of(needles);
  Instance out{task, pre + insert_sorted(rng, haystack(rng, budget), needles), "", join(asked_values, kAnswerSep)};
  out.query = task == Task::niah_multivalue
                  ? "\nQuestion: What are all the special magic numbers for " + asked + "?\nAnswer:"
                  : "\nQuestion: What is the special magic number for " + asked + "?\nAnswer:";
  return out;
}

Instance vt(int64_t tokens, std::mt19937_64& rng) {
  const size_t hops = size_t(uniform(2, 4, rng));  // names per chain: hops + 1
  std::set<std::string> name_set;
  while (name_set.size() < 2 * (hops + 1)) {
    std::string n;
    for (int i = 0; i < 5; ++i) n += char('A' + uniform(0, 25, rng));
    name_set.insert(n);
  }
  std::vector<std::string> names(name_set.begin(), name_set.end());
  std::shuffle(names.begin(), names.end(), rng);
  const auto values = distinct_numbers(rng, 2, kVtLo, kVtHi);
  std::vector<std::vector<std::string>> chain_names(2), statements(2);
  for (size_t c = 0; c < 2; ++c) {  // chain 0 is asked, chain 1 is a distractor
    chain_names[c].assign(names.begin() + long(c * (hops + 1)), names.begin() + long((c + 1) * (hops + 1)));
    statements[c].push_back("VAR " + chain_names[c][0] + " = " + std::to_string(values[c]) + ".");
    for (size_t i = 1; i <= hops; ++i)
      statements[c].push_back("VAR " + chain_names[c][i] + " = " + chain_names[c][i - 1] + ".");
  }
  std::vector<int> order(2 * (hops + 1), 0);  // a random merge of the two chains, each in order
  std::fill(order.begin() + long(hops + 1), order.end(), 1);
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<std::string> needles;
  size_t idx[2] = {0, 0};
  for (int c : order) needles.push_back(statements[size_t(c)][idx[c]++]);
  const std::string pre = preamble(Task::vt);
  const int64_t budget = tokens - estimate_tokens(pre) - tokens_of(needles);
  return Instance{Task::vt, pre + insert_sorted(rng, haystack(rng, budget), needles),
                  "\nQuestion: Which variables are assigned the value " + std::to_string(values[0]) + "?\nAnswer:",
                  join(chain_names[0], kAnswerSep)};
}

Instance cwe(int64_t tokens, std::mt19937_64& rng) {
  std::vector<std::string> pool = kAdjectives;
  pool.insert(pool.end(), kNouns.begin(), kNouns.end());
  const int64_t body = tokens - estimate_tokens(preamble(Task::cwe));
  // Item i is "{i}. {word}": the digits of i, ".", the word, and the space before the next number.
  int64_t n = 0, used = 0;
  for (;;) {
    const int64_t cost = int64_t(std::to_string(n + 1).size()) + 3;
    if (used + cost > body) break;
    ++n;
    used += cost;
  }
  n = std::max<int64_t>(n, 12);
  const int64_t common_count = std::max<int64_t>(4, std::llround(0.08 * double(n)));
  std::shuffle(pool.begin(), pool.end(), rng);
  const std::vector<std::string> common(pool.begin(), pool.begin() + 3), rest(pool.begin() + 3, pool.end());
  std::vector<std::string> words;
  for (int64_t i = 0; i < common_count; ++i) words.insert(words.end(), common.begin(), common.end());
  const int64_t k = n - int64_t(words.size());
  for (int64_t i = 0; i < k; ++i) words.push_back(rest[size_t(i) % rest.size()]);
  std::shuffle(words.begin(), words.end(), rng);
  std::vector<std::string> first;
  for (const auto& w : words)
    if (std::count(common.begin(), common.end(), w) && !std::count(first.begin(), first.end(), w)) first.push_back(w);
  std::string list;
  for (size_t i = 0; i < words.size(); ++i) list += (i ? " " : "") + std::to_string(i + 1) + ". " + words[i];
  return Instance{Task::cwe, preamble(Task::cwe) + list,
                  "\nQuestion: What are the 3 most common words in the list above?\nAnswer:", join(first, kAnswerSep)};
}

Instance fwe(int64_t tokens, std::mt19937_64& rng) {
  const int64_t n = std::max<int64_t>(100, tokens - estimate_tokens(preamble(Task::fwe)));
  std::vector<std::string> words = kCoded;  // words[r] has rank r + 1
  std::shuffle(words.begin(), words.end(), rng);
  double harmonic = 0;
  for (size_t r = 1; r <= words.size(); ++r) harmonic += 1.0 / double(r);
  std::vector<std::string> text;
  for (size_t r = 1; r <= words.size(); ++r) {
    const int64_t count = std::max<int64_t>(1, std::llround(double(n) / (double(r) * harmonic)));
    text.insert(text.end(), size_t(count), words[r - 1]);
  }
  std::shuffle(text.begin(), text.end(), rng);
  return Instance{Task::fwe, preamble(Task::fwe) + join(text, " "),
                  "\nQuestion: What are the 3 most frequent coded words in the text above?\nAnswer:",
                  join({words[0], words[1], words[2]}, kAnswerSep)};
}

}  // namespace

std::string_view to_string(Task task) {
  switch (task) {
    case Task::niah_single:
      return "niah_single";
    case Task::niah_multikey:
      return "niah_multikey";
    case Task::niah_multivalue:
      return "niah_multivalue";
    case Task::vt:
      return "vt";
    case Task::cwe:
      return "cwe";
    case Task::fwe:
      return "fwe";
  }
  return "niah_single";
}

std::optional<Task> task_from_string(std::string_view text) {
  for (Task t : kAllTasks)
    if (to_string(t) == text) return t;
  return std::nullopt;
}

int64_t estimate_tokens(std::string_view text) {
  auto alpha = [](char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); };
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  int64_t n = 0;
  for (size_t i = 0; i < text.size();) {
    const char c = text[i];
    if (alpha(c)) {
      while (i < text.size() && alpha(text[i])) ++i;
      ++n;
    } else if (digit(c) || c == '\n') {
      ++i, ++n;
    } else if (c == ' ') {
      if (i + 1 < text.size() && digit(text[i + 1])) ++n;  // " " before a digit is a token of its own
      ++i;
    } else if (c == '\t' || c == '\r' || c == '\f' || c == '\v') {
      ++i;
    } else {
      ++i, ++n;  // punctuation
    }
  }
  return n;
}

Instance make_instance(Task task, int64_t tokens, std::mt19937_64& rng) {
  tokens = std::clamp<int64_t>(tokens, 64, int64_t(1) << 22);
  switch (task) {
    case Task::vt:
      return vt(tokens, rng);
    case Task::cwe:
      return cwe(tokens, rng);
    case Task::fwe:
      return fwe(tokens, rng);
    default:
      return niah(task, tokens, rng);
  }
}

Instance needle_instance(const std::string& key, int64_t value, int64_t tokens, std::mt19937_64& rng) {
  tokens = std::clamp<int64_t>(tokens, 64, int64_t(1) << 22);
  const std::vector<std::string> needles = {needle(key, value)};
  const std::string pre = preamble(Task::niah_single);
  const int64_t budget = tokens - estimate_tokens(pre) - tokens_of(needles);
  return Instance{Task::niah_single, pre + insert_sorted(rng, haystack(rng, budget), needles),
                  "\nQuestion: What is the special magic number for " + key + "?\nAnswer:", std::to_string(value)};
}

bool is_correct(const Instance& instance, std::string_view generated) {
  const size_t b = generated.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return instance.answer.empty();
  const size_t e = generated.find_last_not_of(" \t\r\n");
  return generated.substr(b, e - b + 1) == instance.answer;
}

}  // namespace starmesh::eval
