#pragma once
// The actor_system_config of every mesh process (router, worker, client, tests): the mesh's
// message types, the middleman (remote actors over TCP), and a scheduler that wakes on a
// condition variable instead of polling, so idle processes leave the cores to compute.
#include <caf/all.hpp>

namespace starmesh {

struct MeshConfigOptions {
  int scheduler_threads = 2;
  bool middleman = true;
  bool deterministic = false;  // CAF's test coordinator: messages run only when a test says so
};

class MeshConfig : public caf::actor_system_config {
 public:
  explicit MeshConfig(const MeshConfigOptions& options = {});
};

}  // namespace starmesh
