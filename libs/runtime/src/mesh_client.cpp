#include "starmesh/runtime/mesh_client.hpp"

#include <caf/io/all.hpp>
#include <caf/openssl/remote_actor.hpp>
#include <condition_variable>
#include <cstring>
#include <future>
#include <mutex>
#include <optional>
#include <thread>

#include "starmesh/runtime/mesh_config.hpp"

namespace starmesh {

namespace {

struct SinkState {
  static inline const char* name = "client_sink";
  std::function<bool(const ClientChunk&)> on_chunk;
  std::function<void(Expected<GenerateSummary>)> on_done;
  std::function<void(const Progress&)> on_progress;  // empty: the caller wants none
  RequestActor driver;
  uint64_t request_id = 0;
  bool cancelled = false;
  bool done = false;
};

using SinkPtr = ClientSinkActor::stateful_pointer<SinkState>;

// A remote driver's end may overtake its last message (done or failed): CAF 0.17's middleman
// deserializes messages on worker threads but handles a remote actor's end on its own thread
// (docs/TRAPS.md). The sink gives that message this long before it calls the driver lost.
constexpr auto kLastMessageGrace = std::chrono::seconds(1);

void end(SinkPtr self, Expected<GenerateSummary> r) {
  if (self->state.done) return;
  self->state.done = true;
  self->state.on_done(std::move(r));
  self->quit();
}

ClientSinkActor::behavior_type client_sink(SinkPtr self, RouterActor router, GenerateOrder order,
                                           std::function<bool(const ClientChunk&)> on_chunk,
                                           std::function<void(Expected<GenerateSummary>)> on_done,
                                           std::chrono::milliseconds timeout) {
  self->state.on_chunk = std::move(on_chunk);
  self->state.on_done = std::move(on_done);
  // The callback stays here: it is the caller's, and does not travel with the order.
  self->state.on_progress = std::move(order.request.on_progress);
  order.request.on_progress = nullptr;
  self->monitor(router);
  self->set_down_handler([=](caf::down_msg& dm) {
    if (dm.source == router.address())
      end(self, make_error(ErrorCode::unavailable, "the router went away before the request finished"));
    else if (self->state.driver && dm.source == self->state.driver.address())
      self->delayed_send(self, kLastMessageGrace, tick_atom::value, self->state.request_id);
  });
  ClientSinkActor me = self;
  self->request(router, timeout, generate_atom::value, std::move(order), me)
      .then(
          [=](Ticket& t) {
            self->state.driver = t.driver;
            self->state.request_id = t.request_id;
            self->monitor(t.driver);
            if (self->state.cancelled) self->send(t.driver, cancel_atom::value, t.request_id);
          },
          [=](caf::error& e) {
            end(self, e == caf::sec::request_timeout
                          ? make_error(ErrorCode::timeout, "the router did not answer within ", format_seconds(timeout))
                          : to_error(e));
          });
  return {
      [=](cancel_atom) {
        auto& s = self->state;
        if (s.done || s.cancelled) return;
        s.cancelled = true;  // the driver, once known, hears of it
        if (s.driver) self->send(s.driver, cancel_atom::value, s.request_id);
      },
      [=](progress_atom, uint64_t, Progress& p) {
        auto& s = self->state;
        if (!s.done && !s.cancelled && s.on_progress) s.on_progress(p);
      },
      [=](tokens_atom, uint64_t, ClientChunk& c) {
        auto& s = self->state;
        if (s.done || s.cancelled) return;
        if (!s.on_chunk(c)) {
          s.cancelled = true;
          if (s.driver) self->send(s.driver, cancel_atom::value, s.request_id);
        }
      },
      [=](done_atom, uint64_t, GenerateSummary& sum) { end(self, std::move(sum)); },
      [=](failed_atom, uint64_t, Error& why) { end(self, std::move(why)); },
      [=](tick_atom, uint64_t request_id) {
        end(self, make_error(ErrorCode::unavailable, "the router's driver of request ", request_id,
                             " ended without a result"));
      },
  };
}

}  // namespace

void MeshClient::submit(GenerateOrder order, std::function<bool(const ClientChunk&)> on_chunk,
                        std::function<void(Expected<GenerateSummary>)> on_done) {
  std::shared_ptr<CancelToken> cancel = order.request.cancel;
  ClientSinkActor sink =
      sys_.spawn(client_sink, router_, std::move(order), std::move(on_chunk), std::move(on_done), timeout_);
  // The caller's client went away: the sink tells the request's driver, which stops phase 1
  // on every host (or phase 2) at once. A sink that has ended ignores it.
  if (cancel) cancel->on_cancel([sink] { caf::anon_send(sink, cancel_atom::value); });
}

void MeshClient::generate(GenerateRequest request, std::function<bool(const TokenChunk&)> on_tokens,
                          std::function<void(Expected<GenerateSummary>)> on_done) {
  GenerateOrder order{std::move(request), false};
  submit(
      std::move(order),
      [on_tokens = std::move(on_tokens)](const ClientChunk& c) {
        return on_tokens(TokenChunk{c.ids, c.text});
      },
      std::move(on_done));
}

Expected<std::vector<WorkerView>> MeshClient::members() {
  caf::scoped_actor self{sys_};
  std::optional<std::vector<WorkerView>> out;
  std::string error;
  self->request(router_, timeout_, members_atom::value)
      .receive([&](std::vector<WorkerView>& v) { out = std::move(v); }, [&](caf::error& e) { error = describe(e); });
  if (!out) return make_error("asking the router for its workers: ", error);
  return *out;
}

Status MeshClient::wait_for_workers(size_t n, std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  size_t have = 0;
  for (;;) {
    SM_ASSIGN(v, members());
    have = v.size();
    if (have >= n) return {};
    if (std::chrono::steady_clock::now() >= until) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return make_error("only ", have, " of ", n, " workers registered with the router within ", format_seconds(timeout));
}

Expected<MeshClient::Result> MeshClient::run(GenerateOrder order) {
  struct Shared {
    std::mutex mu;
    std::condition_variable cv;
    Result result;
    std::optional<Expected<GenerateSummary>> done;
  };
  auto sh = std::make_shared<Shared>();
  submit(
      std::move(order),
      [sh](const ClientChunk& c) {
        std::lock_guard lock(sh->mu);
        sh->result.ids.insert(sh->result.ids.end(), c.ids.begin(), c.ids.end());
        sh->result.text += c.text;
        const size_t n = c.logits.size() / sizeof(float);
        const size_t at = sh->result.logits.size();
        sh->result.logits.resize(at + n);
        if (n) std::memcpy(sh->result.logits.data() + at, c.logits.data(), n * sizeof(float));
        return true;
      },
      [sh](Expected<GenerateSummary> s) {
        std::lock_guard lock(sh->mu);
        sh->done.emplace(std::move(s));
        sh->cv.notify_all();
      });
  std::unique_lock lock(sh->mu);
  sh->cv.wait(lock, [&] { return sh->done.has_value(); });
  if (!*sh->done) return sh->done->error();
  sh->result.summary = sh->done->value();
  return std::move(sh->result);
}

Expected<RouterActor> connect_router(caf::actor_system& sys, const std::string& host, uint16_t port) {
  // Over mutual TLS when this system has the mesh's certificates (mesh_config.hpp).
  auto r = mesh_tls(sys) ? caf::openssl::remote_actor<RouterActor>(sys, host, port)
                         : sys.middleman().remote_actor<RouterActor>(host, port);
  if (!r)
    return make_error(ErrorCode::unavailable, "cannot reach the router at ", host, ":", port, ": ",
                      describe(r.error()));
  return *r;
}

void MeshClient::drop_context(ContextId id, std::string tenant, std::function<void(Status)> on_done) {
  if (id.empty()) return on_done(make_error(ErrorCode::invalid_argument, "no context id given"));
  sys_.spawn([router = router_, timeout = timeout_, id, tenant = std::move(tenant),
              on_done = std::move(on_done)](caf::event_based_actor* self) {
    self->request(router, timeout, drop_atom::value, id, tenant)
        .then(
            [on_done](bool) { on_done({}); },
            [on_done, timeout](caf::error& e) {
              on_done(e == caf::sec::request_timeout
                          ? make_error(ErrorCode::timeout, "the router did not answer within ", format_seconds(timeout))
                          : to_error(e));
            });
  });
}

Status MeshClient::drop(ContextId id, const std::string& tenant) {
  auto done = std::make_shared<std::promise<Status>>();
  auto answer = done->get_future();
  drop_context(id, tenant, [done](Status s) { done->set_value(std::move(s)); });
  return answer.get();
}

}  // namespace starmesh
