#pragma once
// Synthetic long-context tasks in the style of RULER's download-free tasks, with their own
// seeded generator: the same templates and word lists as tools/train/tasks.py (which trained
// models/starmesh-needle), so `starmesh eval` and `starmesh demo` ask what the model learned.
// The random streams differ from Python's: instances are alike, not identical.
//
// An instance is a context (the document: encode it with BOS), a query (encode it apart,
// without BOS, and append it) and the exact answer; the model answers " " + answer, then an
// end-of-turn token. tools/train/README.md documents every template.
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace starmesh::eval {

enum class Task : uint8_t { niah_single, niah_multikey, niah_multivalue, vt, cwe, fwe };
inline constexpr Task kAllTasks[] = {Task::niah_single, Task::niah_multikey, Task::niah_multivalue,
                                     Task::vt,          Task::cwe,           Task::fwe};

std::string_view to_string(Task task);  // "niah_single", ... as in tasks.py
std::optional<Task> task_from_string(std::string_view text);

struct Instance {
  Task task;
  std::string context, query, answer;
};

// One instance of `task` whose context is about `tokens` tokens of the needle tokenizer
// (estimate_tokens; within a few percent). `tokens` is clamped to [64, 1 << 22].
Instance make_instance(Task task, int64_t tokens, std::mt19937_64& rng);

// A niah_single instance with a given key and value (the demo's document).
Instance needle_instance(const std::string& key, int64_t value, int64_t tokens, std::mt19937_64& rng);

// Words, digits, punctuation marks, newlines and a space before a digit: one token each.
int64_t estimate_tokens(std::string_view text);

// Whether generated text answers the instance: the text, stripped of surrounding whitespace,
// equals the answer exactly.
bool is_correct(const Instance& instance, std::string_view generated);

}  // namespace starmesh::eval
