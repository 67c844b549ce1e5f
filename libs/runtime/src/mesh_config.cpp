#include "starmesh/runtime/mesh_config.hpp"

#include <arpa/inet.h>

#include <caf/io/middleman.hpp>
#include <caf/openssl/all.hpp>
#include <fstream>

#include "starmesh/runtime/messages.hpp"

namespace starmesh {

Status MeshTls::check() const {
  const std::pair<const char*, const std::string*> files[] = {
      {"--tls-ca", &ca_file}, {"--tls-cert", &cert_file}, {"--tls-key", &key_file}};
  int given = 0;
  for (const auto& [flag, path] : files) given += path->empty() ? 0 : 1;
  if (given == 0) return {};
  for (const auto& [flag, path] : files) {
    if (path->empty())
      return make_error(ErrorCode::invalid_argument, "mutual TLS needs --tls-ca, --tls-cert and --tls-key; ", flag,
                        " is missing");
    if (!std::ifstream(*path)) return make_error(ErrorCode::invalid_argument, flag, " '", *path, "' cannot be read");
  }
  return {};
}

MeshConfig::MeshConfig(const MeshConfigOptions& options) {
  register_mesh_types(*this);
  if (options.middleman) load<caf::io::middleman>();
  if (options.middleman && options.tls.enabled()) {
    load<caf::openssl::manager>();  // peers must present a certificate from openssl_cafile
    openssl_cafile = options.tls.ca_file;
    openssl_certificate = options.tls.cert_file;
    openssl_key = options.tls.key_file;
  }
  if (options.deterministic) {
    set("scheduler.policy", caf::atom("testing"));
  } else {
    set("scheduler.policy", caf::atom("sharing"));
    set("scheduler.max-threads", std::max(1, options.scheduler_threads));
  }
  set("logger.console", caf::atom("none"));
}

bool mesh_tls(const caf::actor_system& sys) { return !sys.config().openssl_cafile.empty(); }

bool is_loopback_host(const std::string& host) {
  if (host == "localhost" || host == "::1" || host == "[::1]") return true;
  in_addr v4{};
  return inet_pton(AF_INET, host.c_str(), &v4) == 1 && (ntohl(v4.s_addr) >> 24) == 127;
}

Status check_listen_host(const std::string& host, bool tls) {
  if (tls || is_loopback_host(host)) return {};
  return make_error(ErrorCode::invalid_argument, "cannot listen on ", host,
                    " without TLS: the plain control plane authenticates no one, so it listens only on a loopback "
                    "address (127.0.0.1, ::1, localhost); give --tls-ca, --tls-cert and --tls-key to listen on ",
                    host);
}

}  // namespace starmesh
