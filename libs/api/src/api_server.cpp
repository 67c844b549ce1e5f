// ApiServer: the kj event loop on a thread of its own, an accept loop with one two-party RPC
// system per connection (each with its own gateway, so limits apply per connection and per
// peer address), and a cross-thread fulfiller that stop() uses to end the loop.
#include "starmesh/api/api_server.hpp"

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/debug.h>

#include <algorithm>
#include <atomic>
#include <chrono>
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
  ApiLimits limits;
  std::atomic<int64_t> active{0}, connections{0}, refused{0}, accept_failures{0};
  std::atomic<bool> serving{false};
  uint16_t port = 0;
  std::thread thread;
  std::mutex mutex;
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> stop;  // guarded by mutex; null once stopping

  struct TaskErrors final : kj::TaskSet::ErrorHandler {
    void taskFailed(kj::Exception&& e) override {
      if (e.getType() != kj::Exception::Type::DISCONNECTED) KJ_LOG(WARNING, "API connection ended", e);
    }
  };

  // One connection's objects, torn down in order: the RPC system, its network, the stream.
  struct Session {
    kj::Own<api::GuardedStream> stream;
    kj::Own<capnp::TwoPartyVatNetwork> network;
    kj::Own<capnp::RpcSystem<capnp::rpc::twoparty::VatId>> rpc;
    std::atomic<int64_t>* open = nullptr;
    ~Session() {
      rpc = nullptr;
      network = nullptr;
      stream = nullptr;
      if (open) --*open;
    }
  };

  // Serves one accepted connection until it disconnects, fails to log in within the limit, or
  // its gateway closes it; past the connection cap it is closed at once.
  void serve(kj::Own<kj::AsyncIoStream> stream, api::GatewayServer::Shared& shared, kj::TaskSet& tasks) {
    if (connections.load() >= limits.max_connections) {
      ++refused;
      return;  // dropping the stream closes it
    }
    auto conn = std::make_shared<api::ApiConnection>();
    conn->peer = api::peer_address(*stream);
    auto closed = kj::newPromiseAndFulfiller<void>();
    conn->closer = kj::mv(closed.fulfiller);
    auto session = kj::heap<Session>();
    session->stream = kj::heap<api::GuardedStream>(kj::mv(stream), conn, limits.pre_login_bytes);
    session->network = kj::heap<capnp::TwoPartyVatNetwork>(*session->stream, capnp::rpc::twoparty::Side::SERVER);
    session->rpc = kj::heap(capnp::makeRpcServer(*session->network, kj::heap<api::GatewayServer>(shared, conn)));
    session->open = &connections;
    ++connections;
    const auto ms = limits.login_timeout.count();
    auto deadline = shared.timer.afterDelay(ms * kj::MILLISECONDS).then([conn]() -> kj::Promise<void> {
      if (conn->logged_in) return kj::NEVER_DONE;
      return kj::READY_NOW;  // no login in time: close
    });
    tasks.add(session->network->onDisconnect()
                  .exclusiveJoin(kj::mv(deadline))
                  .exclusiveJoin(kj::mv(closed.promise))
                  .attach(kj::mv(session)));
  }

  // Accepts forever; a failed accept (out of file descriptors, say) waits, growing from 10 ms
  // to 1 s, and tries again: the listener stays.
  kj::Promise<void> accept_loop(kj::ConnectionReceiver& listener, api::GatewayServer::Shared& shared,
                                kj::TaskSet& tasks, std::chrono::milliseconds backoff) {
    // evalNow: kj's accept() tries the syscall at once and may throw right here (EMFILE on a
    // retry); as a rejected promise it reaches the handler below instead of ending the loop.
    return kj::evalNow([&listener] { return listener.accept(); })
        .then(
            [this, &listener, &shared, &tasks](kj::Own<kj::AsyncIoStream> stream) {
              try {
                serve(kj::mv(stream), shared, tasks);
              } catch (const kj::Exception& e) {  // one connection's setup failed: keep accepting
                KJ_LOG(WARNING, "API connection setup failed", e.getDescription());
              }
              return accept_loop(listener, shared, tasks, std::chrono::milliseconds(0));
            },
            [this, &listener, &shared, &tasks, backoff](kj::Exception&& e) {
              ++accept_failures;
              KJ_LOG(WARNING, "API accept failed; trying again", e.getDescription());
              const auto next =
                  std::min(std::max(backoff * 2, std::chrono::milliseconds(10)), std::chrono::milliseconds(1000));
              return shared.timer.afterDelay(next.count() * kj::MILLISECONDS)
                  .then(
                      [this, &listener, &shared, &tasks, next] { return accept_loop(listener, shared, tasks, next); });
            });
  }

  // The loop thread: listens, reports the port (or why it cannot), serves until stop().
  void run(std::promise<Expected<uint16_t>>& started) {  // set exactly once
    bool listening = false;
    try {
      auto io = kj::setupAsyncIo();
      auto address_ptr = io.provider->getNetwork().parseAddress(address).wait(io.waitScope);
      auto listener = address_ptr->listen();
      api::GatewayServer::Shared shared{
          service, info, active, tokens, io.provider->getTimer(), api::LoginLimiter({limits.login_spacing}), limits};
      TaskErrors errors;
      kj::TaskSet tasks(errors);  // the connections; destroyed (closed) before the listener
      auto accepting = accept_loop(*listener, shared, tasks, std::chrono::milliseconds(0)).eagerlyEvaluate(nullptr);
      auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
      {
        std::lock_guard lock(mutex);
        stop = kj::mv(paf.fulfiller);
      }
      listening = true;
      serving = true;
      started.set_value(uint16_t(listener->getPort()));
      paf.promise.wait(io.waitScope);
      serving = false;
      // Leaving the scope closes every connection (calls in flight are cancelled), the
      // listener, then the event loop.
    } catch (const kj::Exception& e) {
      serving = false;
      if (!listening)
        started.set_value(with_prefix("cannot serve the API on '" + address + "': ", api::error_of(e)));
      else
        KJ_LOG(ERROR, "starmesh API server loop failed", e);
    }
  }
};

ApiServer::ApiServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ApiServer::~ApiServer() { stop(); }

Expected<std::unique_ptr<ApiServer>> ApiServer::start(generate_service_i& service, const std::string& address,
                                                      InfoFn info, std::vector<std::string> tokens, ApiLimits limits) {
  auto impl = std::unique_ptr<Impl>(new Impl{service, address, std::move(info), std::move(tokens), limits});
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
int64_t ApiServer::connections() const { return impl_->connections.load(); }
int64_t ApiServer::refused_connections() const { return impl_->refused.load(); }
int64_t ApiServer::accept_failures() const { return impl_->accept_failures.load(); }
bool ApiServer::serving() const { return impl_->serving.load(); }

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
