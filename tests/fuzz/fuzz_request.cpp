// libFuzzer target: request validation at the router's edge. A GenerateRequest built from the
// input (every number, text and id list a client controls) goes through request_tokens (the
// router's check) and, when accepted, through the block plan over up to kMaxHosts hosts. An
// accepted request must stay within the documented bounds; nothing may overflow or allocate
// beyond what the request itself carries.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdlib>

#include "starmesh/attention/block_plan.hpp"
#include "starmesh/runtime/request_driver.hpp"
#include "starmesh/runtime/router_context.hpp"

namespace {

using namespace starmesh;

const RouterContext& context() {
  static const std::shared_ptr<const RouterContext> ctx = [] {
    RouterOptions options;
    options.model_dir = STARMESH_GOLDEN_MODEL_DIR;
    options.block_size = 64;
    return load_router_context(options).value();
  }();
  return *ctx;
}

std::vector<int32_t> ids(FuzzedDataProvider& in) {
  std::vector<int32_t> v(in.ConsumeIntegralInRange<size_t>(0, 64));
  for (int32_t& id : v) id = in.ConsumeIntegral<int32_t>();
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  (void)context();  // the tokenizer loads before any input is timed
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  GenerateRequest r;
  r.mode = in.ConsumeBool() ? AttentionMode::star : AttentionMode::global;
  r.block_size = in.ConsumeIntegral<int64_t>();
  r.anchor_size = in.ConsumeIntegral<int64_t>();
  r.max_hosts = in.ConsumeIntegral<int>();
  r.max_new_tokens = in.ConsumeIntegral<int>();
  r.add_bos = in.ConsumeBool();
  r.sampling.temperature = in.ConsumeFloatingPoint<float>();
  r.sampling.top_p = in.ConsumeFloatingPoint<float>();
  r.sampling.top_k = in.ConsumeIntegral<int>();
  r.sampling.seed = in.ConsumeIntegral<uint64_t>();
  if (in.ConsumeBool()) r.context_ids = ids(in);
  if (in.ConsumeBool()) r.query_ids = ids(in);
  r.context_text = in.ConsumeRandomLengthString(4096);
  r.query_text = in.ConsumeRemainingBytesAsString();

  auto tokens = request_tokens(context(), r);
  if (!tokens) {
    if (tokens.code() != ErrorCode::invalid_argument) std::abort();  // a bad request is the client's fault
    return 0;
  }
  if (tokens->query.empty() || int64_t(tokens->context.size()) > kMaxContextTokens) std::abort();
  for (const auto* list : {&tokens->context, &tokens->query})
    for (int32_t id : *list)
      if (id < 0 || id >= context().config.vocab_size) std::abort();
  for (int hosts : {1, 3, tokens->max_hosts > 0 ? tokens->max_hosts : 7})
    (void)plan_blocks(int64_t(tokens->context.size()), tokens->block_size, tokens->anchor_size, hosts);
  return 0;
}
