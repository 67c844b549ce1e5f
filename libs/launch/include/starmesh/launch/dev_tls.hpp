#pragma once
// A throwaway mesh CA for one machine (tests, `starmesh demo`): a CA, one certificate it signs
// for every mesh process, and a self-signed "rogue" certificate the mesh must refuse. Made
// with the openssl command (Debian's `openssl` package). Production meshes use their own CA
// (tools/make_mesh_ca.sh, a Kubernetes Secret: deploy/k8s).
#include <string>

#include "starmesh/core/expected.hpp"
#include "starmesh/runtime/mesh_config.hpp"

namespace starmesh {

struct DevTls {
  MeshTls mesh;   // ca.pem, mesh.pem, mesh-key.pem
  MeshTls rogue;  // the same CA file, but a certificate it did not sign
};

// Writes the files into `dir` (created if needed) and returns their paths.
Expected<DevTls> make_dev_tls(const std::string& dir);

}  // namespace starmesh
