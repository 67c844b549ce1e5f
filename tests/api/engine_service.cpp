#include "api/engine_service.hpp"

#include <algorithm>
#include <optional>

#include "starmesh/attention/star_session.hpp"
#include "starmesh/model/generator.hpp"
#include "starmesh/model/utf8_stream.hpp"

namespace starmesh::test {

Expected<std::pair<std::vector<int32_t>, std::vector<int32_t>>> request_tokens(const GenerateRequest& r,
                                                                               const Tokenizer& tok) {
  std::vector<int32_t> context = r.context_ids;
  if (context.empty() && !r.context_text.empty()) context = tok.encode(r.context_text, r.add_bos);
  std::vector<int32_t> query = r.query_ids;
  if (query.empty() && !r.query_text.empty()) query = tok.encode(r.query_text, r.add_bos && context.empty());
  if (query.empty()) return make_error("the query is empty: give query text or token ids");
  return std::pair{std::move(context), std::move(query)};
}

EngineService::EngineService(const Transformer& model, const Tokenizer& tokenizer)
    : model_(model), tokenizer_(tokenizer), thread_([this] { worker(); }) {}

EngineService::~EngineService() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void EngineService::generate(GenerateRequest request, std::function<bool(const TokenChunk&)> on_tokens,
                             std::function<void(Expected<GenerateSummary>)> on_done) {
  last_priority = int(request.priority);
  {
    std::lock_guard lock(mutex_);
    queue_.push_back(Job{std::move(request), std::move(on_tokens), std::move(on_done)});
  }
  wake_.notify_all();
}

int EngineService::pending() const {
  std::lock_guard lock(mutex_);
  return int(queue_.size()) + (running_job_ ? 1 : 0);
}

void EngineService::worker() {
  for (;;) {
    std::optional<Job> job;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;
      job.emplace(std::move(queue_.front()));
      queue_.pop_front();
      running_job_ = true;
    }
    auto result = serve(*job);
    ++served_;
    job->on_done(std::move(result));
    std::lock_guard lock(mutex_);
    running_job_ = false;
  }
}

Expected<GenerateSummary> EngineService::serve(const Job& job) {
  const GenerateRequest& r = job.request;
  // The mesh keeps contexts; this one-process service does not (and says so: the API tests
  // use it to see that the fields arrive).
  if (r.keep_context) return make_error(ErrorCode::invalid_argument, "this service keeps no contexts (keep_context)");
  if (!r.context_id.empty())
    return make_error(ErrorCode::not_found, "this service keeps no contexts (context ", r.context_id.hex(), ")");
  auto checked = request_tokens(r, tokenizer_);
  if (!checked) return with_code(checked.error(), ErrorCode::invalid_argument);
  auto tokens = std::move(*checked);
  auto& [context, query] = tokens;
  if (r.max_new_tokens <= 0)
    return make_error(ErrorCode::invalid_argument, "max_new_tokens must be > 0, got ", r.max_new_tokens);
  if (Status valid = validate(r.sampling); !valid) return with_code(valid.error(), ErrorCode::invalid_argument);

  const int64_t kv_tokens = int64_t(context.size()) + int64_t(query.size()) + r.max_new_tokens;
  if (kv_tokens > kKvCapacityTokens)
    return make_error(ErrorCode::refused, "the request needs ", kv_tokens, " KV tokens, this service holds ",
                      kKvCapacityTokens);

  GenerateSummary summary;
  summary.context_tokens = int64_t(context.size());
  summary.query_tokens = int64_t(query.size());
  GenerationParams params{r.max_new_tokens, r.sampling, model_.config().eos_token_ids};
  const int64_t capacity = int64_t(query.size()) + r.max_new_tokens;
  StepFn step;
  std::unique_ptr<StarSession> star;
  std::optional<KvCache> cache;
  std::vector<int32_t> prompt = query;
  if (r.mode == AttentionMode::star) {
    if (context.empty()) return make_error(ErrorCode::invalid_argument, "mode star needs a context");
    StarOptions options{r.block_size == 0 ? kDefaultBlockSize : r.block_size, r.anchor_size,
                        r.max_hosts == 0 ? kHosts : r.max_hosts};
    auto session = StarSession::encode(model_, context, options, capacity);
    if (!session) return with_code(session.error(), ErrorCode::invalid_argument);  // the request's sizes
    star = std::move(*session);
    summary.hosts = int(star->plan().hosts.size());
    summary.phase1_seconds = star->phase1_seconds();
    summary.phase1_max_host_seconds = star->phase1_max_host_seconds();
    step = [&](std::span<const int32_t> ids) { return star->step(ids); };
  } else {
    prompt.insert(prompt.begin(), context.begin(), context.end());
    SM_ASSIGN(c, model_.make_cache(int64_t(prompt.size()) + r.max_new_tokens));
    cache.emplace(std::move(c));
    summary.hosts = 1;
    step = [&](std::span<const int32_t> ids) { return model_.forward(ids, *cache); };
  }

  Utf8Stream text;
  bool cancelled = false;
  int32_t last = -1;
  std::optional<Error> error;
  auto stats = generate_with(model_.backend(), step, prompt, params, [&](int32_t id) {
    last = id;
    auto bytes = tokenizer_.token_bytes(id);
    if (!bytes) {
      error = bytes.error();
      return false;
    }
    TokenChunk chunk{{id}, tokenizer_.is_special(id) ? std::string() : text.push(*bytes)};
    if (!job.on_tokens(chunk)) {
      cancelled = true;
      return false;
    }
    if (delay_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms_.load()));
    return true;
  });
  if (!stats) return stats.error();
  if (error) return *error;
  if (const std::string tail = text.flush(); !tail.empty() && !cancelled) job.on_tokens(TokenChunk{{}, tail});
  if (cancelled) ++cancelled_;
  summary.generated_tokens = stats->generated_tokens;
  summary.phase2_prefill_seconds = stats->prefill_seconds;
  summary.decode_seconds = stats->decode_seconds;
  const auto& eos = params.stop_ids;
  summary.stop_reason = cancelled                                              ? StopReason::cancelled
                        : std::find(eos.begin(), eos.end(), last) != eos.end() ? StopReason::eos
                                                                               : StopReason::max_tokens;
  return summary;
}

}  // namespace starmesh::test
