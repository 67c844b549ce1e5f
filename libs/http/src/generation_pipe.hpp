#pragma once
// One generation between the service's callbacks (any thread) and the HTTP thread that answers
// it: text piles up here (a slow client costs memory only for the text itself, never stalls the
// generator), the HTTP thread takes it in slices while it watches its client.
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "starmesh/service/cancel_token.hpp"
#include "starmesh/service/generate_service.hpp"

namespace starmesh::http {

class GenerationPipe {
 public:
  // on_tokens: false once the reader has closed the pipe (the service then stops).
  bool push(const TokenChunk& chunk);
  // on_done: once; later calls are ignored.
  void finish(Expected<GenerateSummary> result);
  void close();

  struct News {
    std::string text;
    int64_t tokens = 0;
    std::optional<Expected<GenerateSummary>> result;  // set once, after the last text
  };
  // What arrived since the last take, waiting at most `at_most` for something to arrive.
  News take(std::chrono::milliseconds at_most);

 private:
  std::mutex mutex_;
  std::condition_variable wake_;
  std::string text_;
  int64_t tokens_ = 0;
  std::optional<Expected<GenerateSummary>> result_;
  bool closed_ = false, finished_ = false;
};

// A running generation as the HTTP thread holds it.
struct GenerationCall {
  std::shared_ptr<GenerationPipe> pipe = std::make_shared<GenerationPipe>();
  std::shared_ptr<CancelToken> cancel = std::make_shared<CancelToken>();
  // Stops the generation now (a stop sequence matched, or the client went away).
  void stop() {
    pipe->close();
    cancel->cancel();
  }
};

// Starts `request` on `service`, its callbacks feeding the call's pipe. Should the service drop
// its callbacks without an answer, the pipe is finished with an internal error.
GenerationCall start_generation(generate_service_i& service, GenerateRequest request);

}  // namespace starmesh::http
