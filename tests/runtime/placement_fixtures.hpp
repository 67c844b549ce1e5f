#pragma once
// What the placement tests (Membership, AdmissionBook) build workers and requests from.
#include <string>

#include "starmesh/runtime/messages.hpp"

namespace starmesh::test {

// A CPU worker of model "m" on the in-process data plane, all of its KV free.
inline WorkerInfo worker_info(const std::string& endpoint, int64_t capacity) {
  WorkerInfo i;
  i.endpoint = endpoint;
  i.device = "cpu";
  i.kv_capacity = capacity;
  i.kv_free = capacity;
  i.model = "m";
  i.data_plane = "in-process";
  i.address = {1};
  return i;
}

inline PlacementAsk placement_ask(int64_t context, int64_t local, int64_t block, int max_hosts = 0) {
  PlacementAsk a;
  a.context_tokens = context;
  a.local_tokens = local;
  a.block_size = block;
  a.max_hosts = max_hosts;
  return a;
}

}  // namespace starmesh::test
