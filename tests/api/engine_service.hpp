#pragma once
// A generate_service_i for the API tests that runs the real engine in process: Star Attention
// through StarSession (hosts simulated in one process) or global attention, on the CPU backend,
// one request at a time on a worker thread of its own. It stands where the router will be.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "starmesh/model/tokenizer.hpp"
#include "starmesh/model/transformer.hpp"
#include "starmesh/service/generate_service.hpp"

namespace starmesh::test {

// The tokens of a request as the engine sees them: context (empty in global mode) and query.
Expected<std::pair<std::vector<int32_t>, std::vector<int32_t>>> request_tokens(const GenerateRequest& r,
                                                                               const Tokenizer& tok);

class EngineService final : public generate_service_i {
 public:
  static constexpr int64_t kDefaultBlockSize = 64;
  static constexpr int kHosts = 4;
  // Its KV pool, as a worker's --capacity: a request needing more is refused, not allocated.
  static constexpr int64_t kKvCapacityTokens = 1 << 16;

  EngineService(const Transformer& model, const Tokenizer& tokenizer);
  ~EngineService() override;  // finishes the queued requests, then joins

  void generate(GenerateRequest request, std::function<bool(const TokenChunk&)> on_tokens,
                std::function<void(Expected<GenerateSummary>)> on_done) override;
  void drop_context(ContextId id, std::string tenant, std::function<void(Status)> on_done) override {
    last_drop_tenant = std::move(tenant);
    on_done(make_error(ErrorCode::not_found, "this service keeps no contexts (context ", id.hex(), ")"));
  }
  std::string last_drop_tenant;        // what the API passed on (the login's token)
  std::atomic<int> last_priority{-1};  // the last request's priority as it arrived (-1: none yet)

  // Sleeps this long after each token (to give a test time to cancel mid-stream).
  void set_token_delay(std::chrono::milliseconds d) { delay_ms_ = int(d.count()); }
  int cancelled() const { return cancelled_; }  // requests that saw on_tokens return false
  int served() const { return served_; }        // requests whose on_done was called
  int pending() const;                          // queued or running

 private:
  struct Job {
    GenerateRequest request;
    std::function<bool(const TokenChunk&)> on_tokens;
    std::function<void(Expected<GenerateSummary>)> on_done;
  };
  void worker();
  Expected<GenerateSummary> serve(const Job& job);

  const Transformer& model_;
  const Tokenizer& tokenizer_;
  std::atomic<int> delay_ms_{0}, cancelled_{0}, served_{0};
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Job> queue_;
  bool running_job_ = false, stopping_ = false;
  std::thread thread_;
};

}  // namespace starmesh::test
