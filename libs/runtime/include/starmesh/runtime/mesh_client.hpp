#pragma once
// generate_service_i over the router's actor protocol: the router process hands one to the
// public API (Cap'n Proto), and tests, the demo and tools use one against a remote router.
// Each request gets a small sink actor that asks the router to generate, receives the
// stream, calls the callbacks (on CAF's threads, in order), and sends `cancel` to the
// request's driver when on_tokens returns false. A router that goes away ends the request
// with an error.
#include <chrono>
#include <functional>

#include "starmesh/runtime/messages.hpp"
#include "starmesh/service/generate_service.hpp"

namespace starmesh {

class MeshClient final : public generate_service_i {
 public:
  MeshClient(caf::actor_system& sys, RouterActor router,
             std::chrono::milliseconds control_timeout = std::chrono::seconds(10))
      : sys_(sys), router_(std::move(router)), timeout_(control_timeout) {}

  void generate(GenerateRequest request, std::function<bool(const TokenChunk&)> on_tokens,
                std::function<void(Expected<GenerateSummary>)> on_done) override;
  void drop_context(ContextId id, std::string tenant, std::function<void(Status)> on_done) override;

  // The same, with the whole chunk (with return_logits: the logits each token was sampled from).
  void submit(GenerateOrder order, std::function<bool(const ClientChunk&)> on_chunk,
              std::function<void(Expected<GenerateSummary>)> on_done);

  // Blocking helpers for tools and tests.
  Expected<std::vector<WorkerView>> members();
  // Waits until at least `n` workers are registered (polling), at most `timeout`.
  Status wait_for_workers(size_t n, std::chrono::milliseconds timeout);
  // Runs one request to its end and collects it.
  struct Result {
    std::vector<int32_t> ids;
    std::string text;
    std::vector<float> logits;  // [ids.size(), vocab] with return_logits
    GenerateSummary summary;
  };
  Expected<Result> run(GenerateOrder order);
  // drop_context, waiting for the answer.
  Status drop(ContextId id, const std::string& tenant = {});

  const RouterActor& router() const { return router_; }

 private:
  caf::actor_system& sys_;
  RouterActor router_;
  std::chrono::milliseconds timeout_;
};

// Connects to a router published at host:port (through CAF's middleman).
Expected<RouterActor> connect_router(caf::actor_system& sys, const std::string& host, uint16_t port);

}  // namespace starmesh
