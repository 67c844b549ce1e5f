#pragma once
// A generate_service_i for the HTTP door's tests: each request streams a script of text chunks
// (one token each) with a delay between them, then the script's ending, on a thread of its own;
// it stops at once when the door cancels. It records what it was asked.
#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "starmesh/service/generate_service.hpp"

namespace starmesh::test {

class ScriptedService final : public generate_service_i {
 public:
  std::vector<std::string> chunks = {"Hel", "lo", " wor", "ld"};
  std::chrono::milliseconds delay{0};
  std::optional<Error> fail;  // ends with this error (before any chunk) instead
  StopReason ending = StopReason::eos;

  ~ScriptedService() override {
    std::lock_guard lock(mutex_);
    for (auto& t : threads_) t.join();
  }

  void generate(GenerateRequest request, std::function<bool(const TokenChunk&)> on_tokens,
                std::function<void(Expected<GenerateSummary>)> on_done) override {
    {
      std::lock_guard lock(mutex_);
      last_ = request;
    }
    std::lock_guard lock(mutex_);
    threads_.emplace_back([this, request = std::move(request), on_tokens, on_done] {
      ++running;
      if (fail) {
        on_done(*fail);
        --running;
        return;
      }
      GenerateSummary s;
      s.context_tokens = 10;
      s.query_tokens = 3;
      s.hosts = 2;
      s.stop_reason = ending;
      for (const std::string& c : chunks) {
        const auto until = std::chrono::steady_clock::now() + delay;
        while (std::chrono::steady_clock::now() < until && !request.cancel->cancelled())
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        if (request.cancel->cancelled() || !on_tokens(TokenChunk{{1}, c})) {
          ++cancelled;
          s.stop_reason = StopReason::cancelled;
          break;
        }
        ++s.generated_tokens;
      }
      on_done(s);
      --running;
    });
  }
  void drop_context(ContextId, std::string tenant, std::function<void(Status)> on_done) override {
    {
      std::lock_guard lock(mutex_);
      last_.tenant = tenant;
    }
    on_done(make_error(ErrorCode::not_found, "no such context"));
  }

  GenerateRequest last() {
    std::lock_guard lock(mutex_);
    return last_;
  }
  std::atomic<int> cancelled{0}, running{0};

 private:
  std::mutex mutex_;
  GenerateRequest last_;
  std::vector<std::thread> threads_;
};

}  // namespace starmesh::test
