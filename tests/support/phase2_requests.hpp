#pragma once
// Star Attention requests on the golden model, encoded and with their query run, ready for
// decode steps alone or batched (tests of QueryHost::step_batch and DecodeBatcher).
#include <doctest/doctest.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <random>

#include "starmesh/attention/star_session.hpp"
#include "starmesh/backend/cpu_backend.hpp"
#include "support/reference.hpp"

namespace starmesh::test {

// The other hosts' shards in this process, answered through gather only (as the data plane
// does): the batch then takes the per-request merge path, not the one-call path.
class GatheredShards final : public remote_partials_i {
 public:
  GatheredShards(const Transformer& model, std::vector<const KvShard*> shards) : inner_(model, std::move(shards)) {}
  Expected<std::vector<AttentionState>> gather(int layer, const Tensor& q) override {
    if (fail_from >= 0 && gathers++ >= fail_from)
      return make_error(ErrorCode::unavailable, "shard host lost (layer ", layer, ")");
    return inner_.gather(layer, q);
  }
  int fail_from = -1;  // a lost host: this gather (counted from 0) and every later one fail
  int gathers = 0;

 private:
  InProcessShards inner_;
};

struct Request {
  std::vector<int32_t> query;  // its first step's tokens (run by make unless asked not to)
  std::vector<KvShard> others;
  std::unique_ptr<remote_partials_i> remotes;
  std::optional<QueryHost> host;
  int32_t next = 0;
  std::vector<int32_t> tokens;
  std::vector<std::vector<float>> logits;
};

// Each batched request against the same request served alone: its tokens, every step's
// logits (within 1e-5) and the tokens its query host holds.
inline void check_as_alone(const std::vector<Request>& batched, const std::vector<Request>& alone) {
  REQUIRE(batched.size() == alone.size());
  for (size_t i = 0; i < alone.size(); ++i) {
    CAPTURE(i);
    CHECK(batched[i].tokens == alone[i].tokens);
    REQUIRE(batched[i].logits.size() == alone[i].logits.size());
    for (size_t s = 0; s < alone[i].logits.size(); ++s)
      CHECK(relative_error(batched[i].logits[s], alone[i].logits[s]) < 1e-5);
    CHECK(batched[i].host->local_tokens() == alone[i].host->local_tokens());
  }
}

// The golden model on the CPU, and requests over it with their query already run.
struct Phase2Requests {
  ThreadPool pool{2};
  CpuBackend cpu{pool};
  Transformer model = Transformer::load(cpu, STARMESH_GOLDEN_MODEL_DIR).value();

  int32_t greedy(const std::vector<float>& row) const {
    return int32_t(std::max_element(row.begin(), row.end()) - row.begin());
  }
  // A request's step's logits, and the greedy token taken from them.
  void record(Request& r, std::vector<float> row) const {
    r.next = greedy(row);
    r.tokens.push_back(r.next);
    r.logits.push_back(std::move(row));
  }
  // r served alone: its query first if it has not run, then `steps` decode steps, recorded.
  void run_alone(Request& r, int steps) const {
    if (r.tokens.empty()) record(r, r.host->step(r.query, *r.remotes).value().to_f32_vector());
    for (int s = 0; s < steps; ++s)
      record(r, r.host->step(std::span<const int32_t>(&r.next, 1), *r.remotes).value().to_f32_vector());
  }
  // One request of a test's mix: see make() below.
  struct Spec {
    int64_t ctx;
    int hosts;
    bool gathered;
    bool prefilled = true;
    size_t query = 3;
  };
  Request make(const Spec& s, uint32_t seed, int64_t capacity) const {
    return make(s.ctx, s.hosts, s.gathered, seed, capacity, s.prefilled, s.query);
  }
  // A request over `context_tokens` random tokens, encoded by phase 1 in `hosts` blocks, its
  // query (`query_tokens` random ones) run alone unless `run_query` is false; `gathered`: the
  // other shards answer through gather.
  Request make(int64_t context_tokens, int hosts, bool gathered, uint32_t seed, int64_t capacity, bool run_query = true,
               size_t query_tokens = 3) const {
    std::mt19937 rng(seed);
    std::vector<int32_t> ctx(static_cast<size_t>(context_tokens)), query(query_tokens);
    for (auto* v : {&ctx, &query})
      for (int32_t& id : *v) id = int32_t(rng() % uint32_t(model.config().vocab_size - 8));
    const int64_t block = (context_tokens + hosts - 1) / hosts;
    auto plan = plan_blocks(context_tokens, block, block, hosts).value();
    auto anchor = encode_anchor(model, plan, ctx).value();
    Request r;
    for (int h = 0; h + 1 < hosts; ++h) r.others.push_back(encode_shard(model, plan, h, ctx, &anchor).value());
    std::vector<const KvShard*> ptrs;
    for (const KvShard& s : r.others) ptrs.push_back(&s);
    if (gathered)
      r.remotes = std::make_unique<GatheredShards>(model, ptrs);
    else
      r.remotes = std::make_unique<InProcessShards>(model, ptrs);
    r.host.emplace(
        QueryHost::create(model, encode_shard(model, plan, hosts - 1, ctx, &anchor).value(), context_tokens, capacity)
            .value());
    r.query = query;
    if (!run_query) return r;
    const std::vector<float> first = r.host->step(query, *r.remotes).value().to_f32_vector();
    r.next = greedy(first);
    r.tokens.push_back(r.next);
    return r;
  }
};

}  // namespace starmesh::test
