#pragma once
// What a worker's compute threads and its query coordinators share: one model on one backend,
// used by one computation at a time.
#include <mutex>

#include "starmesh/model/transformer.hpp"

namespace starmesh {

struct WorkerEngine {
  explicit WorkerEngine(const Transformer& m) : model(m) {}
  const Transformer& model;
  std::mutex compute;  // held per block in phase 1 and per step in phase 2
};

}  // namespace starmesh
