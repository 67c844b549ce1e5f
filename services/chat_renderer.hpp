#pragma once
// The HTTP door's chat: the model's chat template (libs/model ChatTemplate), rendered and split
// for Star Attention by split_chat (context = the conversation before the last user message,
// query = the rest; docs/CHAT.md).
#include <string>

#include "starmesh/core/expected.hpp"
#include "starmesh/http/openai_request.hpp"

namespace starmesh::cli {

// The renderer of `template_file` (a tokenizer_config.json with a chat_template), or of
// `model_dir`/tokenizer_config.json when none is named; an empty renderer (chat answers 404)
// when the model has none. A named file that cannot be used is an error.
Expected<http::ChatRenderer> chat_renderer(const std::string& template_file, const std::string& model_dir);

}  // namespace starmesh::cli
