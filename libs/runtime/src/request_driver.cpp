#include "starmesh/runtime/request_driver.hpp"

#include <spdlog/spdlog.h>

#include <limits>
#include <map>

#include "starmesh/attention/block_plan.hpp"
#include "starmesh/attention/phase1.hpp"
#include "starmesh/comm/message_auth.hpp"
#include "starmesh/model/sampler.hpp"
#include "starmesh/model/utf8_stream.hpp"
#include "starmesh/runtime/membership.hpp"
#include "starmesh/runtime/recovery_policy.hpp"

namespace starmesh {

namespace {
using Clock = std::chrono::steady_clock;

}  // namespace

namespace {
Expected<RequestTokens> check_request(const RouterContext& ctx, const GenerateRequest& r) {
  RequestTokens t;
  const bool star = r.mode == AttentionMode::star;
  if (!star && r.mode != AttentionMode::global) return make_error("unknown attention mode ", int(r.mode));
  if (r.max_new_tokens < 0 || r.max_new_tokens > kMaxNewTokens)
    return make_error("max_new_tokens must be in [0, ", kMaxNewTokens, "], got ", r.max_new_tokens);
  SM_TRY(validate(r.sampling));
  if (r.max_hosts < 0 || r.max_hosts > kMaxHosts)
    return make_error("max_hosts must be in [0, ", kMaxHosts, "] (0: every worker), got ", r.max_hosts);
  if (r.block_size < 0 || r.block_size > kMaxContextTokens)
    return make_error("block_size must be in [0, ", kMaxContextTokens, "] (0: the server's default), got ",
                      r.block_size);
  if (r.anchor_size < -1 || r.anchor_size > kMaxContextTokens)
    return make_error("anchor_size must be in [0, ", kMaxContextTokens, "], or -1 for the block size, got ",
                      r.anchor_size);
  if (r.context_text.size() > kMaxTextBytes || r.query_text.size() > kMaxTextBytes)
    return make_error("context and query text may hold at most ", kMaxTextBytes, " bytes each");
  if (int64_t(r.context_ids.size()) > kMaxContextTokens || int64_t(r.query_ids.size()) > kMaxQueryTokens)
    return make_error("at most ", kMaxContextTokens, " context and ", kMaxQueryTokens, " query token ids");
  const bool kept = !r.context_id.empty();  // a new query over a kept context: its plan and shards are set
  if (kept) {
    if (!star) return make_error("context_id asks a query over a kept context: use mode star");
    if (!r.context_ids.empty() || !r.context_text.empty())
      return make_error("give either a context or the id of a kept one (context_id), not both");
    if (r.keep_context)
      return make_error("keep_context applies to a new context; context ", r.context_id.hex(), " is kept already");
  }
  t.context = !r.context_ids.empty()   ? r.context_ids
              : r.context_text.empty() ? std::vector<int32_t>{}
                                       : ctx.tokenizer.encode(r.context_text, r.add_bos);
  const bool bos_on_query = t.context.empty() && r.context_ids.empty() && !kept;
  t.query = !r.query_ids.empty() ? r.query_ids : ctx.tokenizer.encode(r.query_text, r.add_bos && bos_on_query);
  if (t.query.empty()) return make_error("the query is empty: give query text or query ids");
  if (int64_t(t.context.size()) > kMaxContextTokens || int64_t(t.query.size()) > kMaxQueryTokens)
    return make_error("the context has ", t.context.size(), " tokens and the query ", t.query.size(), "; at most ",
                      kMaxContextTokens, " and ", kMaxQueryTokens);
  const int64_t vocab = ctx.config.vocab_size;
  for (const auto* ids : {&t.context, &t.query})
    for (int32_t id : *ids)
      if (id < 0 || id >= vocab) return make_error("token id ", id, " is outside the model's vocabulary of ", vocab);
  if (kept) return t;
  t.max_hosts = r.max_hosts;
  if (r.keep_context && !star) return make_error("keep_context needs mode star");
  if (!star) {
    // Global attention is Star Attention with one block and no anchor. The split between
    // context and query does not change the result; an empty context takes the query's
    // first tokens.
    if (t.context.empty()) {
      if (t.query.size() < 2) return make_error("global mode needs at least 2 prompt tokens, got 1");
      t.context.assign(t.query.begin(), t.query.end() - 1);
      t.query.erase(t.query.begin(), t.query.end() - 1);
    }
    t.block_size = int64_t(t.context.size());
    t.anchor_size = 0;
    t.max_hosts = 1;
    return t;
  }
  if (t.context.empty()) return make_error("star mode needs a context: give context text or ids (or use mode global)");
  t.block_size = r.block_size > 0 ? r.block_size : ctx.options.block_size;
  t.anchor_size = r.anchor_size;
  return t;
}
}  // namespace

Expected<RequestTokens> request_tokens(const RouterContext& ctx, const GenerateRequest& r) {
  auto t = check_request(ctx, r);
  if (!t) return with_code(t.error(), ErrorCode::invalid_argument);  // everything here is the request's fault
  return t;
}

std::string DriverState::host_name(size_t h) const {
  const PlacedHost& p = placement.hosts.at(h);
  return worker_name(p.worker_id, p.endpoint);
}

using DriverPtr = RequestActor::stateful_pointer<DriverState>;

namespace {

// Ends the request: frees the shards, releases the placement, tells the client. Once.
void finish(DriverPtr self, Expected<GenerateSummary> result) {
  auto& st = self->state;
  if (st.finished) return;
  st.finished = true;
  const uint64_t id = st.setup->request_id, mesh_id = st.mesh_id;  // the client's, the mesh's
  if (st.coordinator && (!result || result->stop_reason == StopReason::cancelled))
    self->send(st.coordinator, cancel_atom::value, mesh_id);
  // A request that asked to keep its context (or encoded its kept context again) and got
  // through phase 1 keeps its shards.
  const bool keep = (st.setup->order.request.keep_context || st.reencoding) && result && st.placed &&
                    st.encoded == st.placement.hosts.size();
  // Clients name a kept context by 128 random bits, not by the request id (a counter).
  const ContextId name = !keep ? ContextId{} : st.reencoding ? st.setup->order.request.context_id : ContextId::random();
  if (keep) result->context_id = name;
  // Fire and forget: the driver does not wait for the answers.
  for (const PlacedHost& h : st.placement.hosts) {
    if (keep)
      caf::anon_send(h.worker, keep_atom::value, mesh_id);
    else
      caf::anon_send(h.worker, free_atom::value, mesh_id);
  }
  // The router's book: `keep` turns the placement into the kept context's, `release` frees it.
  if (keep)  // a new kept context's ids stay with the router: it encodes them again if a worker of it goes
    caf::anon_send(st.setup->router, keep_atom::value, mesh_id, name, st.setup->order.request.tenant,
                   st.reencoding ? std::vector<int32_t>{} : std::move(st.tokens.context));
  else
    self->send(st.setup->router, release_atom::value, mesh_id);
  const std::string tail = st.text.flush();
  if (!tail.empty()) self->send(st.setup->client, tokens_atom::value, id, ClientChunk{{}, tail, {}});
  st.setup->context->metrics->request_finished(st.times, result, !st.setup->order.request.context_id.empty());
  if (result) {
    spdlog::info("request {}: {} tokens ({}), phase 1 {:.1f} ms, prefill {:.1f} ms, decode {:.1f} ms", id,
                 result->generated_tokens, to_string(result->stop_reason), result->phase1_seconds * 1e3,
                 result->phase2_prefill_seconds * 1e3, result->decode_seconds * 1e3);
    self->send(st.setup->client, done_atom::value, id, *result);
  } else {
    spdlog::warn("request {} failed ({}): {}", id, to_string(result.code()), result.error().message);
    self->send(st.setup->client, failed_atom::value, id, result.error());
  }
  self->quit();
}

void fail(DriverPtr self, Error why) { finish(self, std::move(why)); }

// "did not answer within 10 s" for a timeout, "went away" for a dead receiver, else its words;
// the code comes along.
Error explain(const caf::error& e, const std::string& who, const std::string& doing,
              std::chrono::milliseconds timeout) {
  if (e == caf::sec::request_timeout)
    return Error{who + " did not " + doing + " within " + format_seconds(timeout), ErrorCode::timeout};
  if (e == caf::sec::request_receiver_down)
    return Error{who + " went away (its process ended or the connection dropped)", ErrorCode::unavailable};
  return with_prefix(who + ": ", to_error(e));
}

void arm_step_timer(DriverPtr self) {
  const uint64_t t = ++self->state.tick;
  self->delayed_send(self, self->state.setup->context->options.step_timeout, tick_atom::value, t);
}

void recover(DriverPtr self, Error why);

void send_progress(DriverPtr self, ProgressStage stage);

// Host h has encoded `done` of its blocks (its own message after each, or its report at the
// end, whichever comes first): the client hears of every step once, in order.
void count_blocks(DriverPtr self, size_t h, int64_t done) {
  auto& st = self->state;
  if (h >= st.blocks_done.size() || h >= st.blocks_of.size() || st.blocks_total == 0) return;
  done = std::min(done, st.blocks_of[h]);
  if (done <= st.blocks_done[h]) return;
  st.blocks_done[h] = done;
  send_progress(self, ProgressStage::encoding);
}

// Tells the client where the request is (progress_atom in messages.hpp).
void send_progress(DriverPtr self, ProgressStage stage) {
  auto& st = self->state;
  Progress p;
  p.stage = stage;
  p.request_id = st.setup->request_id;
  for (int64_t done : st.blocks_done) p.blocks_done += done;
  p.blocks_total = st.blocks_total;
  p.hosts = int32_t(st.placement.hosts.size());
  self->send(st.setup->client, progress_atom::value, p.request_id, p);
}

void start_phase2(DriverPtr self) {
  auto& st = self->state;
  const RouterOptions& opt = st.setup->context->options;
  st.summary.phase1_seconds = std::chrono::duration<double>(Clock::now() - st.phase1_start).count();
  const size_t q = st.placement.hosts.size() - 1;
  // After a recovery the tokens the client already has follow the query: the new query host
  // encodes them with it, and generation goes on after them.
  st.replayed = st.streamed.size();
  const int left = st.setup->order.request.max_new_tokens - int(st.replayed);
  if (left <= 0) {  // every token was out before the worker was lost
    GenerateSummary s = st.summary;
    s.stop_reason = StopReason::max_tokens;
    return finish(self, s);
  }
  send_progress(self, ProgressStage::prefill);
  Phase2Order order;
  order.request_id = st.mesh_id;
  order.query = st.tokens.query;
  order.query.insert(order.query.end(), st.streamed.begin(), st.streamed.end());
  order.max_new_tokens = left;
  order.sampling = st.setup->order.request.sampling;
  order.stop_ids = st.setup->context->config.eos_token_ids;
  order.return_logits = st.setup->order.return_logits;
  order.sink = self;
  const uint64_t order_id = st.mesh_id;
  self->request(st.placement.hosts[q].worker, opt.control_timeout, phase2_atom::value, std::move(order))
      .then(
          [=](CoordinatorActor& c) {
            if (!self->state.current(order_id)) return;
            self->state.coordinator = c;
            self->monitor(c);
            arm_step_timer(self);
            if (self->state.cancel_requested) self->send(c, cancel_atom::value, order_id);
          },
          [=](caf::error& e) {
            if (!self->state.current(order_id)) return;
            Error why = explain(e, self->state.host_name(q), "answer", opt.control_timeout);
            why.message += " (starting phase 2)";
            recover(self, std::move(why));
          });
}

void start_phase1(DriverPtr self) {
  auto& st = self->state;
  const RouterOptions& opt = st.setup->context->options;
  st.phase1_start = Clock::now();
  std::vector<GroupMember> group;
  for (const PlacedHost& h : st.placement.hosts) group.push_back({h.worker_id, h.endpoint, h.address});
  const auto& ctx = st.tokens.context;
  const int64_t anchor = st.placement.plan.anchor_size;
  const PlanSpec& spec = st.placement.plan;
  auto plan = plan_blocks(spec.context_tokens, spec.block_size, spec.anchor_size, spec.hosts);
  if (!plan) return fail(self, plan.error());
  st.blocks_done.assign(st.placement.hosts.size(), 0);
  st.blocks_of.clear();
  for (const HostRange& r : plan->hosts) st.blocks_of.push_back(r.end_block - r.first_block);
  st.blocks_total = st.placement.kept_context == 0 ? int64_t(plan->blocks.size()) : 0;  // kept: encoded before
  if (st.blocks_total > 0) send_progress(self, ProgressStage::encoding);
  // A fresh key for each attempt: the hosts authenticate the attempt's data-plane messages
  // under it, so only the hosts named here can put data into it.
  auto key = random_message_key();
  if (!key) return fail(self, key.error());
  const std::vector<uint8_t> data_plane_key(key->begin(), key->end());
  for (size_t h = 0; h < st.placement.hosts.size(); ++h) {
    const PlacedHost& ph = st.placement.hosts[h];
    st.host_of[ph.worker.address()] = h;
    self->monitor(ph.worker);
    EncodeOrder o;
    o.request_id = st.mesh_id;
    o.plan = st.placement.plan;
    o.host = int32_t(h);
    o.keep = st.setup->order.request.keep_context || st.reencoding;
    o.reuse_context = st.placement.kept_context;
    o.tenant_tag = tenant_tag(*st.setup->context, st.setup->order.request.tenant);
    o.priority = st.setup->order.request.priority;
    if (o.reuse_context == 0) {  // a kept context's workers hold its shards: no ids travel
      if (anchor > 0 && host_needs_anchor(*plan, int(h)))
        o.anchor_ids = pack_ids(std::span<const int32_t>(ctx).first(size_t(anchor)));
      o.shard_ids = pack_ids(std::span<const int32_t>(ctx).subspan(size_t(ph.begin), size_t(ph.end - ph.begin)));
    }
    o.local_capacity = h + 1 == st.placement.hosts.size() ? st.placement.local_tokens : 0;
    o.step_timeout_ms = opt.step_timeout.count();
    o.group = group;
    o.driver = self;
    o.data_plane_key = data_plane_key;
    const uint64_t order_id = st.mesh_id;
    self->request(ph.worker, opt.phase1_timeout, encode_atom::value, std::move(o))
        .then(
            [=](EncodeReport& report) {
              auto& s = self->state;
              if (!s.current(order_id)) return;
              auto& slowest = self->state.summary.phase1_max_host_seconds;
              slowest = std::max(slowest, report.phase1_seconds);
              count_blocks(self, h, std::numeric_limits<int64_t>::max());  // all of them
              if (++self->state.encoded == self->state.placement.hosts.size()) {
                if (self->state.cancel_requested) {
                  GenerateSummary sum = self->state.summary;
                  sum.stop_reason = StopReason::cancelled;
                  finish(self, sum);
                } else {
                  start_phase2(self);
                }
              }
            },
            [=](caf::error& e) {
              if (!self->state.current(order_id)) return;
              recover(self, explain(e, self->state.host_name(h), "finish phase 1", opt.phase1_timeout));
            });
  }
}

// Asks the router for a placement (or the kept context's), then runs phase 1.
void request_placement(DriverPtr self) {
  auto& st = self->state;
  const RouterContext& ctx = *st.setup->context;
  PlacementAsk ask;
  ask.context_tokens = int64_t(st.tokens.context.size());
  ask.local_tokens = int64_t(st.tokens.query.size()) + st.setup->order.request.max_new_tokens;
  ask.block_size = st.tokens.block_size;
  ask.anchor_size = st.tokens.anchor_size;
  ask.max_hosts = st.tokens.max_hosts;
  ask.tenant = st.setup->order.request.tenant;
  ask.priority = st.setup->order.request.priority;
  const uint64_t order_id = st.mesh_id;
  auto placed = [=](Placement& p) {
    auto& s = self->state;
    if (!s.current(order_id)) return;
    s.placement = std::move(p);
    s.placed = true;
    // A kept context that lost its shards comes with its ids: this question encodes it again.
    s.reencoding = !s.placement.context_ids.empty();
    if (s.reencoding) s.tokens.context = std::move(s.placement.context_ids);
    s.summary.hosts = int(s.placement.hosts.size());
    s.summary.context_tokens = s.placement.plan.context_tokens;
    if (s.cancel_requested) {  // cancelled while being placed
      GenerateSummary sum = s.summary;
      sum.stop_reason = StopReason::cancelled;
      finish(self, sum);
      return;
    }
    start_phase1(self);
  };
  // The router may queue the request (or the question over a kept context) for KV capacity:
  // allow for that wait.
  const auto wait = ctx.options.control_timeout + ctx.options.admission.queue_timeout;
  auto not_placed = [=](caf::error& e) {
    auto& s = self->state;
    if (!s.current(order_id)) return;
    Error why = e == caf::sec::request_timeout
                    ? Error{"the router did not place the request within " + format_seconds(wait), ErrorCode::timeout}
                    : to_error(e);
    // After a lost worker, too little capacity left is the retriable error: the mesh may grow.
    if (s.replans > 0)
      why = with_code(with_prefix("after " + s.lost + ", the workers left cannot take the request: ", std::move(why)),
                      ErrorCode::unavailable);
    fail(self, std::move(why));
  };
  if (const ContextId& kept = st.setup->order.request.context_id; !kept.empty()) {
    st.summary.context_id = kept;
    self->request(st.setup->router, wait, attach_atom::value, order_id, kept, ask).then(placed, not_placed);
  } else {
    self->request(st.setup->router, wait, place_atom::value, order_id, ask).then(placed, not_placed);
  }
}

// A failure while the request runs: plans it again on the workers left when the policy says so
// (recovery_policy.hpp), else fails it. The old attempt's hosts free its shards and its
// coordinator stops; the next one starts after kReplanPause, time for the router to take the
// lost worker out of the mesh (its own down message, or the heartbeat that found it).
constexpr auto kReplanPause = std::chrono::milliseconds(200);

void recover(DriverPtr self, Error why) {
  auto& st = self->state;
  if (st.finished || st.replanning) return;  // one failure can arrive by several paths
  RecoveryCase c;
  c.code = why.code;
  c.cancelled = st.cancel_requested;
  c.replans = st.replans;
  c.max_replans = st.setup->context->options.max_replans;
  const RecoveryDecision d = decide_recovery(c);
  if (d.action == RecoveryAction::fail) {
    if (why.code == ErrorCode::unauthenticated)  // an injection attempt: the operator hears of it here
      spdlog::warn("request {}: the data plane refused a forged message: {}", st.setup->request_id, why.message);
    why.message += d.note;
    if (d.code) why.code = *d.code;
    return fail(self, std::move(why));
  }
  for (const PlacedHost& h : st.placement.hosts) {
    caf::anon_send(h.worker, free_atom::value, st.mesh_id);
    self->demonitor(h.worker.address());
  }
  if (st.coordinator) {
    self->send(st.coordinator, cancel_atom::value, st.mesh_id);
    self->demonitor(st.coordinator.address());
    st.coordinator = nullptr;
  }
  st.host_of.clear();
  st.placed = false;
  st.encoded = 0;
  st.summary.phase1_max_host_seconds = 0;
  st.replanning = true;
  ++st.replans;
  st.lost = why.message;
  spdlog::warn("request {}: {}; planning it again on the workers left (attempt {}, {} tokens out)",
               st.setup->request_id, why.message, st.replans + 1, st.streamed.size());
  st.replan_tick = ++st.tick;  // also stops the step timer of the old attempt
  self->delayed_send(self, kReplanPause, tick_atom::value, st.replan_tick);
}

// The pause is over: a fresh id from the router (which frees the old attempt's KV), then a
// placement on the workers there are now.
void start_replan(DriverPtr self) {
  auto& st = self->state;
  const auto timeout = st.setup->context->options.control_timeout;
  self->request(st.setup->router, timeout, replan_atom::value, st.mesh_id)
      .then(
          [=](uint64_t fresh) {
            auto& s = self->state;
            if (s.finished) return;
            s.mesh_id = fresh;
            s.replanning = false;
            request_placement(self);
          },
          [=](caf::error& e) {
            fail(self, with_prefix("planning again after " + self->state.lost + ": ", to_error(e)));
          });
}

}  // namespace

RequestActor::behavior_type request_driver(DriverPtr self, std::shared_ptr<DriverSetup> setup) {
  auto& st = self->state;
  st.setup = setup;
  const RouterContext& ctx = *setup->context;
  const uint64_t id = setup->request_id;
  ctx.metrics->in_flight.add(1);  // finish() takes it back
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& s = self->state;
    if (s.finished) return;
    if (s.coordinator && dm.source == s.coordinator.address()) {
      recover(self, make_error(ErrorCode::unavailable, "the query coordinator on ",
                               s.host_name(s.placement.hosts.size() - 1), " ended without a result"));
      return;
    }
    auto it = s.host_of.find(dm.source);
    if (it != s.host_of.end())
      recover(self, make_error(ErrorCode::unavailable, s.host_name(it->second),
                               " went away during the request (its process ended or the connection dropped)"));
  });
  auto tokens = request_tokens(ctx, setup->order.request);
  if (!tokens) {
    fail(self, tokens.error());
    return {[](tokens_atom, uint64_t, TokenBatch&) {},
            [](progress_atom, uint64_t, int32_t, int64_t) {},
            [](done_atom, uint64_t, Phase2Report&) {},
            [](failed_atom, uint64_t, Error&) {},
            [](cancel_atom, uint64_t) {},
            [](tick_atom, uint64_t) {}};
  }
  st.tokens = std::move(*tokens);
  st.summary.context_tokens = int64_t(st.tokens.context.size());
  st.summary.query_tokens = int64_t(st.tokens.query.size());
  st.mesh_id = id;
  st.summary.request_id = id;
  send_progress(self, ProgressStage::queued);
  request_placement(self);
  return {
      [=](tokens_atom, uint64_t from, TokenBatch& b) {
        auto& s = self->state;
        if (!s.current(from)) return;
        arm_step_timer(self);
        ClientChunk c;
        for (int32_t tok : b.ids) {
          auto bytes = s.setup->context->tokenizer.token_bytes(tok);
          if (bytes && !s.setup->context->tokenizer.is_special(tok)) c.text += s.text.push(*bytes);
        }
        s.summary.generated_tokens += int64_t(b.ids.size());
        s.streamed.insert(s.streamed.end(), b.ids.begin(), b.ids.end());
        s.setup->context->metrics->tokens_streamed(s.times, b.ids.size());
        c.ids = std::move(b.ids);
        c.logits = std::move(b.logits);
        self->send(s.setup->client, tokens_atom::value, id, std::move(c));
      },
      [=](progress_atom, uint64_t attempt, int32_t host, int64_t done) {
        auto& s = self->state;
        if (s.current(attempt) && host >= 0) count_blocks(self, size_t(host), done);
      },
      [=](done_atom, uint64_t from, Phase2Report& r) {
        if (!self->state.current(from)) return;
        GenerateSummary s = self->state.summary;
        s.generated_tokens = int64_t(self->state.replayed) + r.generated_tokens;
        s.phase2_prefill_seconds = r.prefill_seconds;
        s.decode_seconds = r.decode_seconds;
        s.stop_reason = r.stop_reason;
        finish(self, s);
      },
      [=](failed_atom, uint64_t attempt, Error& why) {
        auto& s = self->state;
        if (!s.current(attempt)) return;
        // From the coordinator (its error), or from a shard host's loop.
        const caf::actor_addr from = self->current_sender() ? self->current_sender()->address() : caf::actor_addr{};
        if (from == s.setup->router.address()) return recover(self, std::move(why));  // says which worker
        std::string who =
            s.placed ? "the query coordinator on " + s.host_name(s.placement.hosts.size() - 1) : "a worker";
        auto it = s.host_of.find(from);
        if (it != s.host_of.end()) who = s.host_name(it->second);
        recover(self, with_prefix(who + ": ", std::move(why)));
      },
      [=](cancel_atom, uint64_t) {
        auto& s = self->state;
        if (s.finished || s.cancel_requested) return;
        s.cancel_requested = true;
        if (s.coordinator) {
          self->send(s.coordinator, cancel_atom::value, s.mesh_id);
        } else if (s.replanning || (s.placed && s.encoded < s.placement.hosts.size())) {
          // During phase 1 (or between attempts) there is nothing to stop gracefully: end now
          // (the workers are told to free). Before placement, the placement's answer ends it; after phase 1, the
          // coordinator is told as soon as it exists.
          GenerateSummary sum = s.summary;
          sum.stop_reason = StopReason::cancelled;
          finish(self, sum);
        }
      },
      [=](tick_atom, uint64_t t) {
        auto& s = self->state;
        if (s.finished || t != s.tick) return;
        if (s.replanning && t == s.replan_tick) return start_replan(self);
        fail(self,
             make_error(ErrorCode::timeout, "the query coordinator on ", s.host_name(s.placement.hosts.size() - 1),
                        " sent nothing for ", format_seconds(s.setup->context->options.step_timeout)));
      },
  };
}

}  // namespace starmesh
