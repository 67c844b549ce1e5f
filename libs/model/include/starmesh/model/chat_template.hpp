#pragma once
// A checkpoint's chat template (tokenizer_config.json's "chat_template"), rendered exactly as HF
// transformers' apply_chat_template(messages, tokenize=False, add_generation_prompt=...) does:
// the template sees messages (a list of {"role", "content"}), add_generation_prompt, bos_token,
// eos_token, tools = none, documents = none, date_string when given, and the functions
// raise_exception(msg) (an invalid_argument error carrying msg) and strftime_now(format).
// Checked byte for byte on the Llama 3, 3.1 and 3.2 instruct templates against the renderings in
// tests/fixtures/chat (tools/make_chat_fixtures.py; the file says whether transformers itself or
// jinja2 set up as transformers sets it up made them). docs/CHAT.md has the user's view.
#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "starmesh/core/expected.hpp"
#include "starmesh/model/jinja_template.hpp"

namespace starmesh {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant", "tool", ...
  std::string content;
};

struct ChatRenderOptions {
  // Ends the rendering with the header the assistant's reply follows (what a server wants).
  bool add_generation_prompt = true;
  // Passed to the template as `date_string` when not empty: the Llama 3.1/3.2 templates print it
  // as "Today Date: ..." (3.1 defaults to "26 Jul 2024", 3.2 to strftime_now("%d %b %Y")).
  std::string date_string;
  // The time strftime_now() formats (UTC); unset: the clock at render time. Tests fix it.
  std::optional<std::chrono::sys_seconds> now;
};

class ChatTemplate {
 public:
  // Errors (invalid_argument) name the template line that is wrong or that uses something this
  // subset lacks; `limits` bound the template and every rendering.
  static Expected<ChatTemplate> parse(std::string source, std::string bos_token, std::string eos_token,
                                      const jinja::Limits& limits = {});
  // tokenizer_config.json's chat_template (a string, or the list form's "default" entry), or a
  // chat_template.jinja beside it (where transformers 4.5x+ saves it); not_found when neither.
  // bos_token / eos_token are read from the same file (strings or {"content": ...}).
  static Expected<ChatTemplate> from_tokenizer_config(const std::filesystem::path& tokenizer_config_json,
                                                      const jinja::Limits& limits = {});

  // Every role and content must be UTF-8 (invalid_argument naming the message otherwise).
  Expected<std::string> render(const std::vector<ChatMessage>& messages, const ChatRenderOptions& opts) const;

  const std::string& source() const { return source_; }
  const std::string& bos_token() const { return bos_token_; }
  const std::string& eos_token() const { return eos_token_; }

 private:
  ChatTemplate(jinja::Template t, std::string source, std::string bos, std::string eos)
      : template_(std::move(t)), source_(std::move(source)), bos_token_(std::move(bos)), eos_token_(std::move(eos)) {}
  jinja::Template template_;
  std::string source_, bos_token_, eos_token_;
};

// Star Attention's split of a conversation into the context (phase 1: encoded once, in blocks
// over the workers) and the query (phase 2: what the coordinator runs against that context).
//   context = the rendering of every message before the last "user" message, with no
//             generation prompt;
//   query   = what the full rendering (with opts.add_generation_prompt) adds after that prefix.
// So context + query is always exactly render(messages, opts). The prefix is checked to be a
// string prefix of the full rendering; when it is not (a template that rewrites earlier turns
// once more arrive, e.g. one that only prints the system prompt with the last user message),
// the whole rendering is the query and the context is empty. Long documents belong in a system
// message or an earlier user turn: a conversation whose only user message is its first message
// has an empty context and runs entirely as query. No user message at all: everything is query.
struct ChatSplit {
  std::string context, query;
};
Expected<ChatSplit> split_chat(const ChatTemplate& t, const std::vector<ChatMessage>& messages,
                               const ChatRenderOptions& opts);

}  // namespace starmesh
