#pragma once
// What a worker's compute threads and its query coordinators share: one model on one backend,
// used by one computation at a time in the order the arbiter's policy chooses (per block in
// phase 1, per layer's partials on a shard host, per decode batch on a query host).
#include "starmesh/model/transformer.hpp"
#include "starmesh/runtime/decode_batcher.hpp"
#include "starmesh/runtime/device_arbiter.hpp"
#include "starmesh/runtime/shard_batcher.hpp"

namespace starmesh {

struct WorkerEngine {
  WorkerEngine(const Transformer& m, int max_batch, int64_t prefill_chunk, int64_t batch_prefill_tokens)
      : model(m),
        batcher(arbiter, max_batch, batch_prefill_tokens),
        shards(arbiter, max_batch),
        prefill_chunk(prefill_chunk) {}
  const Transformer& model;
  DeviceArbiter arbiter;
  DecodeBatcher batcher;  // the query hosts' decode steps, and their short queries' prefills
  ShardBatcher shards;    // the shard hosts' partials for other workers' steps
  // Phase 1 holds the device this many tokens at a time (EncodeControl::chunk_tokens).
  const int64_t prefill_chunk;
};

}  // namespace starmesh
