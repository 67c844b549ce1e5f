#pragma once
// The bootstrap capability `Starmesh` (schemas/starmesh.capnp) over a generate_service_i.
#include <kj/timer.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "api_connection.hpp"
#include "login_limiter.hpp"
#include "starmesh.capnp.h"
#include "starmesh/api/api_server.hpp"

namespace starmesh::api {

class StarmeshServer final : public wire::Starmesh::Server {
 public:
  // `tenant`: whom this login speaks for (its token; "" on an API without tokens). Requests
  // and drops carry it: a kept context answers only its tenant.
  StarmeshServer(generate_service_i& service, ApiServer::InfoFn info, std::atomic<int64_t>& active, std::string tenant)
      : service_(service), info_(std::move(info)), active_(active), tenant_(std::move(tenant)) {}

 protected:
  kj::Promise<void> generate(GenerateContext context) override;
  kj::Promise<void> info(InfoContext context) override;
  kj::Promise<void> dropContext(DropContextContext context) override;

 private:
  generate_service_i& service_;
  ApiServer::InfoFn info_;
  std::atomic<int64_t>& active_;
  std::string tenant_;
};

// The bootstrap: hands out StarmeshServer capabilities to clients whose credentials are among
// `tokens` (any credentials when `tokens` is empty). One per connection. Failed logins are answered in the slots the
// shared LoginLimiter gives the peer's address; a connection with too many failed logins pending, or in all, is closed.
class GatewayServer final : public wire::Gateway::Server {
 public:
  struct Shared {  // what every connection's gateway uses; lives on the loop thread (the
                   // references: the server's own, which outlive the loop)
    generate_service_i& service;
    const ApiServer::InfoFn& info;
    std::atomic<int64_t>& active;
    const std::vector<std::string>& tokens;
    kj::Timer& timer;
    LoginLimiter limiter;
    const ApiLimits& limits;
  };
  GatewayServer(Shared& shared, std::shared_ptr<ApiConnection> conn) : shared_(shared), conn_(std::move(conn)) {}

 protected:
  kj::Promise<void> login(LoginContext context) override;

 private:
  bool accepts(kj::StringPtr credentials) const;
  Shared& shared_;
  std::shared_ptr<ApiConnection> conn_;
};

}  // namespace starmesh::api
