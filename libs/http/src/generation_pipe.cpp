#include "generation_pipe.hpp"

namespace starmesh::http {

bool GenerationPipe::push(const TokenChunk& chunk) {
  {
    std::lock_guard lock(mutex_);
    if (closed_) return false;
    text_ += chunk.text;
    tokens_ += int64_t(chunk.ids.size());
  }
  wake_.notify_all();
  return true;
}

void GenerationPipe::finish(Expected<GenerateSummary> result) {
  {
    std::lock_guard lock(mutex_);
    if (finished_) return;
    finished_ = true;
    result_.emplace(std::move(result));
  }
  wake_.notify_all();
}

void GenerationPipe::close() {
  std::lock_guard lock(mutex_);
  closed_ = true;
}

GenerationPipe::News GenerationPipe::take(std::chrono::milliseconds at_most) {
  std::unique_lock lock(mutex_);
  wake_.wait_for(lock, at_most, [this] { return !text_.empty() || result_.has_value(); });
  News news;
  news.text = std::exchange(text_, {});
  news.tokens = std::exchange(tokens_, 0);
  if (result_) {
    news.result = std::move(result_);
    result_.reset();
  }
  return news;
}

GenerationCall start_generation(generate_service_i& service, GenerateRequest request) {
  GenerationCall call;
  request.cancel = call.cancel;
  // Answers for a service that drops its callbacks without calling on_done.
  struct Guard {
    explicit Guard(std::shared_ptr<GenerationPipe> p) : pipe(std::move(p)) {}
    Guard(const Guard&) = delete;
    ~Guard() { pipe->finish(make_error("the server dropped the request without an answer")); }
    std::shared_ptr<GenerationPipe> pipe;
  };
  auto guard = std::make_shared<Guard>(call.pipe);
  service.generate(
      std::move(request), [guard](const TokenChunk& chunk) { return guard->pipe->push(chunk); },
      [guard](Expected<GenerateSummary> result) { guard->pipe->finish(std::move(result)); });
  return call;
}

}  // namespace starmesh::http
