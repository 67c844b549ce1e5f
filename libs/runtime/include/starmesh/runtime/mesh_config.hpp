#pragma once
// The actor_system_config of every mesh process (router, worker, client, tests): the mesh's
// message types, the middleman (remote actors over TCP, or over mutual TLS), and a scheduler
// that wakes on a condition variable instead of polling, so idle processes leave the cores to
// compute.
#include <caf/all.hpp>
#include <caf/io/middleman.hpp>
#include <caf/openssl/publish.hpp>
#include <set>
#include <string>

#include "starmesh/core/expected.hpp"

namespace starmesh {

// Mutual TLS on the control plane: every mesh process presents a certificate signed by the
// mesh's CA and accepts only peers that do (tools/make_mesh_ca.sh makes a development CA).
// All three files, or none (then the control plane is plain TCP: local use only).
struct MeshTls {
  std::string ca_file;    // PEM: the mesh's CA certificate
  std::string cert_file;  // PEM: this process's certificate (chain), signed by the CA
  std::string key_file;   // PEM: its private key
  bool enabled() const { return !ca_file.empty(); }
  // All three given and readable, or none; the error names the missing one.
  Status check() const;
};

struct MeshConfigOptions {
  int scheduler_threads = 2;
  bool middleman = true;
  bool deterministic = false;  // CAF's test coordinator: messages run only when a test says so
  MeshTls tls;
};

class MeshConfig : public caf::actor_system_config {
 public:
  explicit MeshConfig(const MeshConfigOptions& options = {});
};

// Whether `sys` speaks TLS on the control plane (its config has the mesh's CA).
bool mesh_tls(const caf::actor_system& sys);

// 127.0.0.0/8, ::1 or "localhost".
bool is_loopback_host(const std::string& host);
// Where the control plane may listen: anywhere with TLS; without it (it authenticates no one,
// and CAF sizes a message from its header) only on a loopback address. The error says why.
Status check_listen_host(const std::string& host, bool tls);

// Publishes `actor` on host:port (0: any free port) over TLS when the system is configured
// for it, else plain TCP; returns the port.
template <class Handle>
Expected<uint16_t> publish_actor(const Handle& actor, const std::string& host, uint16_t port) {
  auto& sys = actor.home_system();
  SM_TRY(check_listen_host(host, mesh_tls(sys)));
  auto published = mesh_tls(sys) ? caf::openssl::publish(actor, port, host.c_str(), true)
                                 : sys.middleman().publish(actor, port, host.c_str(), true);
  if (!published)
    return make_error(ErrorCode::unavailable, "cannot listen on ", host, ":", port, ": ",
                      caf::to_string(published.error()));
  return *published;
}

}  // namespace starmesh
