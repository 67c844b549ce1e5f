#pragma once
// The bootstrap capability `Starmesh` (schemas/starmesh.capnp) over a generate_service_i.
#include <kj/timer.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "starmesh.capnp.h"
#include "starmesh/api/api_server.hpp"

namespace starmesh::api {

class StarmeshServer final : public wire::Starmesh::Server {
 public:
  StarmeshServer(generate_service_i& service, ApiServer::InfoFn info, std::atomic<int64_t>& active)
      : service_(service), info_(std::move(info)), active_(active) {}

 protected:
  kj::Promise<void> generate(GenerateContext context) override;
  kj::Promise<void> info(InfoContext context) override;
  kj::Promise<void> dropContext(DropContextContext context) override;

 private:
  generate_service_i& service_;
  ApiServer::InfoFn info_;
  std::atomic<int64_t>& active_;
};

// The bootstrap: hands out StarmeshServer capabilities to clients whose credentials are among
// `tokens` (any credentials when `tokens` is empty).
class GatewayServer final : public wire::Gateway::Server {
 public:
  GatewayServer(generate_service_i& service, ApiServer::InfoFn info, std::atomic<int64_t>& active,
                std::vector<std::string> tokens, std::shared_ptr<kj::Timer*> timer)
      : service_(service),
        info_(std::move(info)),
        active_(active),
        tokens_(std::move(tokens)),
        timer_(std::move(timer)) {}

 protected:
  kj::Promise<void> login(LoginContext context) override;

 private:
  bool accepts(kj::StringPtr credentials) const;
  generate_service_i& service_;
  ApiServer::InfoFn info_;
  std::atomic<int64_t>& active_;
  std::vector<std::string> tokens_;
  std::shared_ptr<kj::Timer*> timer_;  // set by the server once its event loop exists
};

}  // namespace starmesh::api
