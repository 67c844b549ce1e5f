#pragma once
// What the API fuzz target and its seed maker serve: the real engine on the embedded golden
// model (tests/api/engine_service) behind two real ApiServers on 127.0.0.1, one that wants a
// token (bytes land before login) and one open to any credentials (bytes land after login).
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

#include "api/engine_service.hpp"
#include "starmesh/api/api_server.hpp"
#include "starmesh/backend/cpu_backend.hpp"
#include "starmesh/model/tokenizer.hpp"
#include "starmesh/model/transformer.hpp"

namespace starmesh::fuzz {

inline const std::string kToken = "fuzz-token-0123456789";

struct ServedApi {
  ThreadPool pool{1};
  CpuBackend backend{pool};
  std::optional<Transformer> model;
  std::optional<Tokenizer> tokenizer;
  std::unique_ptr<test::EngineService> service;
  std::unique_ptr<ApiServer> with_token, open;

  ServedApi() {
    auto m = Transformer::load(backend, STARMESH_GOLDEN_MODEL_DIR);
    auto t = Tokenizer::load(std::string(STARMESH_GOLDEN_MODEL_DIR) + "/tokenizer.json");
    if (!m || !t) throw std::runtime_error("cannot load the embedded model");
    model.emplace(std::move(*m));
    tokenizer.emplace(std::move(*t));
    service = std::make_unique<test::EngineService>(*model, *tokenizer);
    ApiLimits limits;
    limits.login_spacing = std::chrono::milliseconds(1);  // the fuzzer makes thousands of failed logins
    with_token = ApiServer::start(*service, "127.0.0.1:0", {}, {kToken}, limits).value();
    open = ApiServer::start(*service, "127.0.0.1:0", {}, {}, limits).value();
  }
};

}  // namespace starmesh::fuzz
