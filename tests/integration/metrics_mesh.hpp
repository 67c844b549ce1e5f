#pragma once
// The mesh the metrics tests scrape: a router and 2 CPU workers of the golden model on
// 127.0.0.1, every process with its /metrics port.
#include "starmesh/launch/local_mesh.hpp"

namespace starmesh::test {

inline LocalMeshOptions metrics_mesh_options() {
  LocalMeshOptions o;
  o.program = STARMESH_CLI;
  o.model_dir = STARMESH_GOLDEN_MODEL_DIR;
  o.workers = 2;
  o.capacity = 2048;
  o.threads_per_worker = 1;
  o.block_size = 256;
  o.metrics = true;
  return o;
}

}  // namespace starmesh::test
