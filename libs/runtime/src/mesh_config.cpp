#include "starmesh/runtime/mesh_config.hpp"

#include <caf/io/middleman.hpp>

#include "starmesh/runtime/messages.hpp"

namespace starmesh {

MeshConfig::MeshConfig(const MeshConfigOptions& options) {
  register_mesh_types(*this);
  if (options.middleman) load<caf::io::middleman>();
  if (options.deterministic) {
    set("scheduler.policy", caf::atom("testing"));
  } else {
    set("scheduler.policy", caf::atom("sharing"));
    set("scheduler.max-threads", std::max(1, options.scheduler_threads));
  }
  set("logger.console", caf::atom("none"));
}

}  // namespace starmesh
