#pragma once
// The router's book of workers: who registered (address, device, KV capacity), how much of
// each worker's KV the running requests hold, and where a new request goes. Plain data, no
// actor code: the router actor owns one and calls it from its handlers.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "starmesh/core/expected.hpp"
#include "starmesh/runtime/messages.hpp"

namespace starmesh {

class Membership {
 public:
  // model: the signature every worker must report (model_signature()); empty: taken from
  // the first worker.
  explicit Membership(std::string model = {}) : model_(std::move(model)) {}

  // Adds a worker; refuses one with another model or data plane than the mesh's, or no
  // capacity. Returns its id (1, 2, ...).
  Expected<uint32_t> add(WorkerActor handle, WorkerInfo info);
  // Forgets the worker behind `who` (its actor went down); returns it if it was known.
  std::optional<WorkerView> remove(const caf::actor_addr& who);
  std::optional<WorkerView> remove(uint32_t id);
  // The worker behind `who` is leaving: no new placement goes to it (its running requests
  // finish). Returns it if it was known.
  std::optional<WorkerView> drain(const caf::actor_addr& who);
  std::optional<WorkerView> drain(uint32_t id);

  // Plans the blocks of a request and places them on workers with free KV: as many hosts
  // as allowed, the query host on the worker with the most free KV. Reserves the tokens
  // until release(request_id). Refuses, with the numbers, when the workers cannot hold it.
  Expected<Placement> place(uint64_t request_id, const PlacementAsk& ask);
  void release(uint64_t request_id);
  // Books exactly these (worker id, tokens) under `key` (a request, or context_key(id) for a
  // kept context), or refuses, naming the worker short of free KV.
  Status reserve_exact(uint64_t key, const std::vector<std::pair<uint32_t, int64_t>>& tokens);
  // Whether `ask` would be placed if no request held KV: worth queueing for, not refusing.
  bool fits_when_idle(const PlacementAsk& ask) const;

  std::vector<WorkerView> view() const;
  std::optional<WorkerView> find(uint32_t id) const;
  // Every registered worker's id and handle (liveness probes).
  std::vector<std::pair<uint32_t, WorkerActor>> handles() const;
  size_t size() const { return workers_.size(); }
  // "worker 3 at 127.0.0.1:PORT", for messages.
  std::string name(uint32_t id) const;

  struct Entry {
    WorkerView view;
    WorkerActor handle;
    int64_t free() const { return view.info.kv_free - view.reserved; }
  };

 private:
  void book(uint64_t key, const std::vector<std::pair<uint32_t, int64_t>>& tokens);  // checked by the caller
  std::map<uint32_t, Entry> workers_;
  std::map<uint64_t, std::vector<std::pair<uint32_t, int64_t>>> reservations_;  // request -> (worker, tokens)
  uint32_t next_id_ = 1;
  std::string model_, data_plane_;
};

// "worker ID at ENDPOINT".
std::string worker_name(uint32_t id, const std::string& endpoint);

}  // namespace starmesh
