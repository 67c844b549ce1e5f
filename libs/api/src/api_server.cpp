// ApiServer: the kj event loop on a thread of its own, an EzRpcServer on it, and a
// cross-thread fulfiller that stop() uses to end the loop.
#include "starmesh/api/api_server.hpp"

#include <capnp/ez-rpc.h>
#include <kj/async-io.h>

#include <fstream>
#include <future>
#include <mutex>
#include <thread>

#include "starmesh_server.hpp"
#include "wire.hpp"

namespace starmesh {

struct ApiServer::Impl {
  generate_service_i& service;
  std::string address;
  InfoFn info;
  std::vector<std::string> tokens;
  std::atomic<int64_t> active{0};
  uint16_t port = 0;
  std::thread thread;
  std::mutex mutex;
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> stop;  // guarded by mutex; null once stopping

  // The loop thread: listens, reports the port (or why it cannot), serves until stop().
  void run(std::promise<Expected<uint16_t>>& started) {  // set exactly once
    bool listening = false;
    try {
      // The gateway needs the loop's timer, which exists once the server does (before any
      // call can arrive).
      auto timer = std::make_shared<kj::Timer*>(nullptr);
      capnp::EzRpcServer server(kj::heap<api::GatewayServer>(service, info, active, tokens, timer), address);
      *timer = &server.getIoProvider().getTimer();
      auto& wait_scope = server.getWaitScope();
      const uint bound = server.getPort().wait(wait_scope);
      auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
      {
        std::lock_guard lock(mutex);
        stop = kj::mv(paf.fulfiller);
      }
      listening = true;
      started.set_value(uint16_t(bound));
      paf.promise.wait(wait_scope);
      // Leaving the scope closes the listener and every connection: calls in flight are
      // cancelled, then the event loop goes.
    } catch (const kj::Exception& e) {
      if (!listening)
        started.set_value(with_prefix("cannot serve the API on '" + address + "': ", api::error_of(e)));
      else
        KJ_LOG(ERROR, "starmesh API server loop failed", e);
    }
  }
};

Expected<std::vector<std::string>> load_api_tokens(const std::string& path) {
  std::ifstream in(path);
  if (!in) return make_error("cannot read the API tokens file '", path, "'");
  std::vector<std::string> tokens;
  for (std::string line; std::getline(in, line);) {
    const auto b = line.find_first_not_of(" \t\r"), e = line.find_last_not_of(" \t\r");
    if (b == std::string::npos || line[b] == '#') continue;
    tokens.push_back(line.substr(b, e - b + 1));
  }
  if (tokens.empty()) return make_error("the API tokens file '", path, "' holds no token (one per line)");
  return tokens;
}

ApiServer::ApiServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ApiServer::~ApiServer() { stop(); }

Expected<std::unique_ptr<ApiServer>> ApiServer::start(generate_service_i& service, const std::string& address,
                                                      InfoFn info, std::vector<std::string> tokens) {
  auto impl = std::unique_ptr<Impl>(new Impl{service, address, std::move(info), std::move(tokens)});
  // Shared: the loop thread may still be inside set_value() when start() returns.
  auto started = std::make_shared<std::promise<Expected<uint16_t>>>();
  auto port = started->get_future();
  impl->thread = std::thread([&impl = *impl, started] { impl.run(*started); });
  auto bound = port.get();
  if (!bound) {
    impl->thread.join();
    return bound.error();
  }
  impl->port = *bound;
  return std::unique_ptr<ApiServer>(new ApiServer(std::move(impl)));
}

uint16_t ApiServer::port() const { return impl_->port; }

int64_t ApiServer::active_requests() const { return impl_->active.load(); }

void ApiServer::stop() {
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> stop;
  {
    std::lock_guard lock(impl_->mutex);
    stop = kj::mv(impl_->stop);
  }
  if (stop.get() != nullptr) stop->fulfill();
  if (impl_->thread.joinable()) impl_->thread.join();
}

}  // namespace starmesh
