#include "chat_renderer.hpp"

#include <filesystem>
#include <memory>

#include "starmesh/model/chat_template.hpp"

namespace starmesh::cli {

Expected<http::ChatRenderer> chat_renderer(const std::string& template_file, const std::string& model_dir) {
  const std::filesystem::path path = template_file.empty() ? std::filesystem::path(model_dir) / "tokenizer_config.json"
                                                           : std::filesystem::path(template_file);
  // The model's own file may be absent or hold no template: then the model does not chat.
  if (template_file.empty() && !std::filesystem::exists(path)) return http::ChatRenderer{};
  auto parsed = ChatTemplate::from_tokenizer_config(path);
  if (!parsed) {
    if (template_file.empty() && parsed.code() == ErrorCode::not_found) return http::ChatRenderer{};
    return with_prefix("chat template '" + path.string() + "': ", parsed.error());
  }
  auto chat = std::make_shared<const ChatTemplate>(std::move(*parsed));
  return http::ChatRenderer([chat](const std::vector<http::ChatTurn>& turns) -> Expected<http::ChatText> {
    std::vector<ChatMessage> messages;
    messages.reserve(turns.size());
    for (const http::ChatTurn& t : turns) messages.push_back({t.role, t.content});
    // No date_string: the template's own default (Llama 3.1: a fixed date; 3.2: today's).
    SM_ASSIGN(split, split_chat(*chat, messages, ChatRenderOptions{}));
    return http::ChatText{std::move(split.context), std::move(split.query)};
  });
}

}  // namespace starmesh::cli
