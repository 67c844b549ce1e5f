#pragma once
// The bootstrap capability `Starmesh` (schemas/starmesh.capnp) over a generate_service_i.
#include <atomic>
#include <cstdint>

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

 private:
  generate_service_i& service_;
  ApiServer::InfoFn info_;
  std::atomic<int64_t>& active_;
};

}  // namespace starmesh::api
