#pragma once
// The router actor: workers register with it (address, device, KV capacity) and are
// monitored; a generate order gets a request id and a request driver (request_driver.hpp),
// which tokenizes, asks the router to place the blocks, runs phase 1 everywhere, phase 2 on
// the query host, streams the tokens to the client's sink and frees the shards. Which
// request gets KV, waits or is refused, and which kept context stays, is AdmissionBook's
// decision (admission_book.hpp); this actor only translates messages and two timers into
// calls on it and carries out what it decides.
#include "starmesh/runtime/messages.hpp"
#include "starmesh/runtime/router_context.hpp"

namespace starmesh {

RouterActor spawn_router(caf::actor_system& sys, std::shared_ptr<const RouterContext> context);

}  // namespace starmesh
