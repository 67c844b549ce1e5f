#pragma once
// Many requests' decode steps on one worker as one batch. Each query coordinator's thread asks
// for its request's next step; the steps asked while a batch runs wait, and the next batch
// takes them all (up to max_batch): QueryHost::step_batch runs them with GEMMs over the batch.
// One of the waiting threads leads a batch (it holds the device through the arbiter); for the
// requests whose shards are on other workers, each request's own thread waits on its network
// for every layer, all at once, while the leader frees the device.
// A batch waits, up to `gather` (default 2 ms), for the requests of the last batch that are
// still sampling their token: without it, requests fall into two groups that take turns
// (each batch half of them), since a group's threads come back while the other's batch runs.
// A query's prefill of at most `prefill_tokens` tokens joins a batch too, so that a new
// question does not hold the device alone while others decode (one read of the weights for
// both); a batch takes such prefills up to `prefill_tokens` tokens in all: first the oldest
// of each tenant (API token, by its router-given tag), then the others oldest first, so that
// one tenant's burst of questions does not hold back another's.
// A step asked with its sampling rule (step_sampled) has its token drawn by the leader once the
// batch has run, every row one after the other with the device idle: one thread and no
// stream traffic between batches, instead of each request's thread queueing its draw and
// waiting for the device while the next batch gathers.
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <unordered_set>

#include "starmesh/attention/phase2.hpp"
#include "starmesh/model/generator.hpp"
#include "starmesh/runtime/device_arbiter.hpp"

namespace starmesh {

class DecodeBatcher {
 public:
  static constexpr int kMaxBatch = 256;
  // max_batch in [1, kMaxBatch]: the most requests one batch takes. prefill_tokens >= 0: the
  // most prefill tokens one batch takes (0: a query's prefill never joins; step() refuses it).
  DecodeBatcher(DeviceArbiter& arbiter, int max_batch, int64_t prefill_tokens = 0,
                std::chrono::microseconds gather = std::chrono::microseconds(2000));

  // One step of `request`'s query host (of the tenant tagged `tenant`), batched with the
  // others asked meanwhile: one decode token, or its query's prefill (at most
  // prefill_tokens()). Blocks until it ran; returns the logits of the last token [1, vocab] on
  // the model's backend, or why its step failed (its shard hosts' error: the others go on).
  Expected<Tensor> step(QueryHost& host, remote_partials_i& remotes, std::span<const int32_t> ids, uint64_t request,
                        uint64_t tenant = 0);
  // The same step, and the next token drawn from its logits with `spec` (backend_i::sample).
  Expected<SampledStep> step_sampled(QueryHost& host, remote_partials_i& remotes, std::span<const int32_t> ids,
                                     uint64_t request, uint64_t tenant, const SampleSpec& spec);

  int64_t prefill_tokens() const { return prefill_tokens_; }

  // `request` asks no more steps (its generation ended): no batch waits for it.
  void leave(uint64_t request);

  // Steps waiting for a batch now (tests).
  size_t waiting();

  // What a batch holds: decode steps, and queries' prefills with their tokens and tenants.
  struct Shape {
    size_t decode_steps = 0, prefills = 0, prefill_tenants = 0;
    int64_t prefill_tokens = 0;
  };
  // Called as each batch starts (metrics, tests); set before the first step.
  void on_batch(std::function<void(const Shape&)> fn) { on_batch_ = std::move(fn); }

 private:
  struct Entry;
  Expected<SampledStep> run(QueryHost& host, remote_partials_i& remotes, std::span<const int32_t> ids, uint64_t request,
                            uint64_t tenant, std::optional<SampleSpec> spec);
  void lead(std::unique_lock<std::mutex>& lock, Entry& me);
  std::vector<Entry*> take_batch(Entry& me, Shape& shape);  // under mu_; counts what it takes into shape
  std::vector<Expected<std::vector<AttentionState>>> gather_all(std::unique_lock<std::mutex>& lock,
                                                                std::vector<Entry*>& batch, Entry& me, int layer,
                                                                std::span<const size_t> which,
                                                                std::span<const Tensor> qs);

  DeviceArbiter& arbiter_;
  const size_t max_batch_;
  const int64_t prefill_tokens_;
  const std::chrono::microseconds gather_;
  std::function<void(const Shape&)> on_batch_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Entry*> queue_;                // waiting for a batch, oldest first
  bool leading_ = false;                    // a thread leads a batch now (or has been told to)
  std::unordered_set<uint64_t> returning_;  // stepped in the last batch, not asking again yet
};

}  // namespace starmesh
