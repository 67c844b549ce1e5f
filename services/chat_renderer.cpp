#include "chat_renderer.hpp"

namespace starmesh::cli {

Expected<http::ChatRenderer> chat_renderer(const std::string& template_file, const std::string&) {
  // The template engine (ChatTemplate, libs/model) is not in this tree yet: chat is off.
  if (!template_file.empty())
    return make_error(ErrorCode::invalid_argument, "--chat-template: this build cannot render chat templates yet");
  return http::ChatRenderer{};
}

}  // namespace starmesh::cli
