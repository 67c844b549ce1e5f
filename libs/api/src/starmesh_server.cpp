#include "starmesh_server.hpp"

#include <kj/debug.h>

#include "generate_call.hpp"
#include "wire.hpp"

namespace starmesh::api {

kj::Promise<void> StarmeshServer::generate(GenerateContext context) {
  // A generation holds workers and KV memory: when the client goes away, stop it.
  context.allowCancellation();
  auto params = context.getParams();
  auto request = from_wire(params.getRequest());
  if (!request) return to_exception(request.error());
  auto call = kj::heap<GenerateCall>(params.getSink(), context, active_);
  request->cancel = call->mailbox()->token();
  if (params.getRequest().getProgress())  // the mailbox, not the call: it may run after the call is gone
    request->on_progress = [mailbox = call->mailbox()](const Progress& p) { mailbox->progress(p); };
  request->tenant = tenant_;  // the login's, whatever the client sent
  context.releaseParams();    // the context text may be large; the request holds its own copy

  // The callbacks hold only the mailbox: they may run on any thread, after the call is gone.
  // Should the service drop them without calling on_done, the guard answers for it.
  struct AnswerGuard {
    explicit AnswerGuard(std::shared_ptr<Mailbox> m) : mailbox(std::move(m)) {}
    AnswerGuard(const AnswerGuard&) = delete;
    ~AnswerGuard() { mailbox->finish(make_error("the server dropped the request without an answer")); }
    std::shared_ptr<Mailbox> mailbox;
  };
  auto guard = std::make_shared<AnswerGuard>(call->mailbox());
  service_.generate(
      std::move(*request), [guard](const TokenChunk& chunk) { return guard->mailbox->add(chunk); },
      [guard](Expected<GenerateSummary> result) { guard->mailbox->finish(std::move(result)); });
  auto done = call->run();
  return done.attach(kj::mv(call));
}

kj::Promise<void> StarmeshServer::info(InfoContext context) {
  ServerInfo info = info_ ? info_() : ServerInfo{};
  if (info.version.empty()) info.version = STARMESH_VERSION;
  to_wire(info, context.getResults().initInfo());
  return kj::READY_NOW;
}

kj::Promise<void> StarmeshServer::dropContext(DropContextContext context) {
  auto params = context.getParams();
  if (params.getContextId() != 0)
    return to_exception(make_error(ErrorCode::invalid_argument,
                                   "contextId (64-bit) is no longer accepted: name a kept context by its contextKey"));
  auto id = ContextId::parse(std::string_view(params.getContextKey().cStr(), params.getContextKey().size()));
  if (!id) return to_exception(id.error());
  // The service answers on any thread: a cross-thread fulfiller brings it back to the loop.
  auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
  auto fulfiller = std::make_shared<kj::Own<kj::CrossThreadPromiseFulfiller<void>>>(kj::mv(paf.fulfiller));
  service_.drop_context(*id, tenant_, [fulfiller](Status s) {
    if (s)
      (*fulfiller)->fulfill();
    else
      (*fulfiller)->reject(to_exception(s.error()));
  });
  return kj::mv(paf.promise);
}

bool GatewayServer::accepts(kj::StringPtr credentials) const {
  return api_token_accepted(shared_.tokens, std::string_view(credentials.cStr(), credentials.size()));
}

kj::Promise<void> GatewayServer::login(LoginContext context) {
  if (accepts(context.getParams().getCredentials())) {
    conn_->logged_in = true;
    const kj::StringPtr token = context.getParams().getCredentials();
    std::string tenant = shared_.tokens.empty() ? std::string() : std::string(token.cStr(), token.size());
    context.getResults().setStarmesh(
        kj::heap<StarmeshServer>(shared_.service, shared_.info, shared_.active, std::move(tenant)));
    return kj::READY_NOW;
  }
  const ApiLimits& lim = shared_.limits;
  if (conn_->failures_pending >= lim.max_pending_logins || conn_->failures >= lim.max_failed_logins) {
    conn_->close();  // a guesser: the server closes the connection on its next turn
    return to_exception(make_error(ErrorCode::unauthenticated,
                                   "login refused: too many failed logins on this "
                                   "connection; it is closed"));
  }
  ++conn_->failures_pending;
  ++conn_->failures;
  const auto now = LoginLimiter::Clock::now();
  const auto wait = shared_.limiter.failure_slot(conn_->peer, now) - now;
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(wait).count();
  return shared_.timer.afterDelay(ns * kj::NANOSECONDS).then([conn = conn_]() -> kj::Promise<void> {
    --conn->failures_pending;
    return to_exception(make_error(ErrorCode::unauthenticated,
                                   "login refused: these credentials are not among the router's API tokens"));
  });
}

}  // namespace starmesh::api
