#pragma once
// What an API endpoint says about itself (`info` in schemas/starmesh.capnp).
#include <cstdint>
#include <string>

namespace starmesh {

struct ServerInfo {
  std::string model;               // the served checkpoint's name
  uint32_t workers = 0;            // context workers available now
  std::string version;             // starmesh version
  int64_t max_context_tokens = 0;  // 0: not known
};

}  // namespace starmesh
