#include "starmesh/runtime/query_coordinator.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <thread>

#include "starmesh/model/generator.hpp"
#include "starmesh/runtime/remote_shards.hpp"
#include "starmesh/runtime/worker_engine.hpp"

namespace starmesh {

// Between the generation thread and the actor.
struct CoordinatorChannel {
  std::mutex mu;
  TokenBatch pending;  // sampled, not yet sent
  std::atomic<bool> cancel{false};
  // The outcome, written once before `finished` is posted.
  Status error;
  Phase2Report report;
};

namespace {
using Channel = CoordinatorChannel;

void generation_thread(std::shared_ptr<CoordinatorSetup> setup, std::shared_ptr<Channel> ch, CoordinatorActor self) {
  WorkerEngine& engine = *setup->engine;
  const Transformer& model = engine.model;
  const Phase2Order& order = setup->order;
  RemoteShards remotes(model, *setup->transport, setup->host_names, setup->step_timeout);
  remotes.count_into(setup->metrics.get());
  setup->transport->cancel_on(setup->freed.get());  // a freed request stops waiting on the network
  Phase2Report report;
  report.query_tokens = int64_t(order.query.size());
  Status error;
  auto qh = QueryHost::create(model, setup->shard, setup->context_tokens, setup->local_capacity);
  if (!qh) {
    error = qh.status();
  } else {
    std::vector<float> last_logits;
    // Each generated token's step joins the worker's decode batch, and so does a short query's
    // prefill (at most the batch's prefill budget); a longer one runs alone, as phase-1 work.
    ArbiterLock prefill_lock(engine.arbiter, WorkKind::phase1, order.request_id, setup->tenant_tag, setup->priority);
    ArbiterLock decode_lock(engine.arbiter, WorkKind::decode, order.request_id);
    // The batch draws its requests' tokens itself (after one synchronisation); a prefill run
    // alone draws its own.
    SampledStepFn step = [&](std::span<const int32_t> ids, const SampleSpec& spec) -> Expected<SampledStep> {
      Expected<SampledStep> out = SampledStep{};
      if (ids.size() == 1 || int64_t(ids.size()) <= engine.batcher.prefill_tokens()) {
        out = engine.batcher.step_sampled(*qh, remotes, ids, order.request_id, setup->tenant_tag, spec);
      } else {
        std::unique_lock<compute_lock_i> lock(prefill_lock);
        remotes.release_while_waiting(&lock);
        Expected<Tensor> logits = qh->step(ids, remotes);
        remotes.release_while_waiting(nullptr);
        if (!logits) return logits.error();
        SM_ASSIGN(token, model.backend().sample(*logits, spec));
        out = SampledStep{std::move(*logits), token};
      }
      if (out && order.return_logits) {
        std::lock_guard lock(decode_lock);
        SM_ASSIGN(h, model.backend().download(out->logits));
        last_logits = h.to_f32_vector();
      }
      return out;
    };
    GenerationParams params;
    params.max_new_tokens = order.max_new_tokens;
    params.sampling = order.sampling;
    params.stop_ids = order.stop_ids;
    bool cancelled = false;
    int32_t last = -1;
    auto on_token = [&](int32_t id) {
      last = id;
      {
        std::lock_guard lock(ch->mu);
        ch->pending.ids.push_back(id);
        if (order.return_logits) {
          const auto* b = reinterpret_cast<const uint8_t*>(last_logits.data());
          ch->pending.logits.insert(ch->pending.logits.end(), b, b + last_logits.size() * sizeof(float));
        }
      }
      caf::anon_send(self, tokens_atom::value, order.request_id);
      if (ch->cancel.load()) cancelled = true;
      return !cancelled;
    };
    auto stats = generate_sampled(step, order.query, params, on_token);
    engine.batcher.leave(order.request_id);
    if (!stats) {
      error = stats.status();
    } else {
      report.generated_tokens = stats->generated_tokens;
      report.prefill_seconds = stats->prefill_seconds;
      report.decode_seconds = stats->decode_seconds;
      const bool eos = std::find(order.stop_ids.begin(), order.stop_ids.end(), last) != order.stop_ids.end();
      report.stop_reason = cancelled ? StopReason::cancelled : eos ? StopReason::eos : StopReason::max_tokens;
    }
  }
  // The shard hosts wait for the next step until told: tell them, whatever happened (when the
  // request was freed, their workers stop them).
  setup->transport->cancel_on(nullptr);
  if (!(setup->freed && setup->freed->load())) remotes.finish();
  {
    std::lock_guard lock(ch->mu);
    ch->error = std::move(error);
    ch->report = report;
  }
  caf::anon_send(self, finished_atom::value, order.request_id);
}
}  // namespace

CoordinatorState::~CoordinatorState() {
  if (channel) channel->cancel = true;
  if (thread.joinable()) thread.join();
}

CoordinatorActor::behavior_type query_coordinator(CoordinatorActor::stateful_pointer<CoordinatorState> self,
                                                  std::shared_ptr<CoordinatorSetup> setup) {
  self->state.setup = setup;
  self->state.channel = std::make_shared<CoordinatorChannel>();
  CoordinatorActor me = self;
  self->state.thread = std::thread(generation_thread, setup, self->state.channel, me);
  auto flush = [=] {
    TokenBatch batch;
    {
      std::lock_guard lock(self->state.channel->mu);
      std::swap(batch, self->state.channel->pending);
    }
    if (!batch.ids.empty())
      self->send(setup->order.sink, tokens_atom::value, setup->order.request_id, std::move(batch));
  };
  return {
      [=](cancel_atom, uint64_t) { self->state.channel->cancel = true; },
      [=](tokens_atom, uint64_t) { flush(); },
      [=](finished_atom, uint64_t) {
        flush();
        if (self->state.thread.joinable()) self->state.thread.join();
        CoordinatorChannel& ch = *self->state.channel;
        const uint64_t id = setup->order.request_id;
        if (ch.error)
          self->send(setup->order.sink, done_atom::value, id, ch.report);
        else
          self->send(setup->order.sink, failed_atom::value, id, ch.error.error());
        self->quit();
      },
  };
}

}  // namespace starmesh
