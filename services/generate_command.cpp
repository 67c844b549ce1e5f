#include <fmt/core.h>

#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "commands.hpp"
#include "starmesh/backend/cpu_backend.hpp"
#include "starmesh/model/generator.hpp"
#include "starmesh/model/tokenizer.hpp"
#include "starmesh/model/utf8_stream.hpp"

namespace starmesh::cli {
namespace {

struct GenerateOptions {
  std::string model_dir = STARMESH_DEFAULT_MODEL_DIR;
  std::string prompt;
  std::string prompt_ids;
  int max_new_tokens = 32;
  SamplingParams sampling;
  int threads = 0;
  bool add_bos = true;
};

Expected<std::vector<int32_t>> parse_ids(const std::string& text) {
  std::vector<int32_t> ids;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    try {
      size_t used = 0;
      const long v = std::stol(item, &used);
      if (used != item.size() || v < INT32_MIN || v > INT32_MAX) throw std::invalid_argument(item);
      ids.push_back(int32_t(v));
    } catch (const std::exception&) {
      return make_error("--prompt-ids: '", item, "' is not a token id (want e.g. 1,42,7)");
    }
  }
  return ids;
}

int run_generate(const GenerateOptions& o) {
  ThreadPool pool(o.threads);
  CpuBackend backend(pool);
  auto fail = [](const std::string& what) {
    fmt::print(stderr, "error: {}\n", what);
    return 1;
  };
  auto model = Transformer::load(backend, o.model_dir);
  if (!model) return fail(model.error().message);
  auto tokenizer = Tokenizer::load(o.model_dir + "/tokenizer.json");
  if (!tokenizer) return fail(tokenizer.error().message);

  std::vector<int32_t> prompt;
  if (!o.prompt_ids.empty()) {
    auto ids = parse_ids(o.prompt_ids);
    if (!ids) return fail(ids.error().message);
    prompt = *ids;
  } else {
    prompt = tokenizer->encode(o.prompt, o.add_bos);
  }
  GenerationParams params;
  params.max_new_tokens = o.max_new_tokens;
  params.sampling = o.sampling;
  params.stop_ids = model->config().eos_token_ids;
  auto cache = model->make_cache(int64_t(prompt.size()) + o.max_new_tokens);
  if (!cache) return fail(cache.error().message);

  Utf8Stream text;
  std::string error;
  auto stats = generate(*model, *cache, prompt, params, [&](int32_t id) {
    auto bytes = tokenizer->token_bytes(id);
    if (!bytes) {
      error = bytes.error().message;
      return false;
    }
    if (!tokenizer->is_special(id)) std::fputs(text.push(*bytes).c_str(), stdout);
    std::fflush(stdout);
    return true;
  });
  std::fputs(text.flush().c_str(), stdout);
  std::fputs("\n", stdout);
  if (!stats) return fail(stats.error().message);
  if (!error.empty()) return fail(error);
  const double decode_tps = stats->generated_tokens > 1 ? double(stats->generated_tokens - 1) / stats->decode_seconds : 0;
  fmt::print(stderr, "prompt {} tokens, prefill {:.1f} ms ({:.0f} tok/s); generated {} tokens, {:.1f} tok/s\n",
             stats->prompt_tokens, stats->prefill_seconds * 1e3, double(stats->prompt_tokens) / stats->prefill_seconds,
             stats->generated_tokens, decode_tps);
  return 0;
}

}  // namespace

void add_generate_command(CLI::App& app, int& exit_code) {
  auto opts = std::make_shared<GenerateOptions>();
  CLI::App* cmd = app.add_subcommand("generate", "Generate text with one model on the CPU backend");
  cmd->add_option("--model", opts->model_dir, "HF Llama checkpoint folder (config.json, safetensors, tokenizer.json)")
      ->capture_default_str();
  auto* prompt = cmd->add_option("--prompt", opts->prompt, "Prompt text");
  auto* ids = cmd->add_option("--prompt-ids", opts->prompt_ids, "Prompt as comma-separated token ids");
  prompt->excludes(ids);
  cmd->add_option("--max-tokens", opts->max_new_tokens, "Tokens to generate")->capture_default_str();
  cmd->add_option("--temperature", opts->sampling.temperature, "0 = greedy")->capture_default_str();
  cmd->add_option("--top-k", opts->sampling.top_k, "0 = no limit")->capture_default_str();
  cmd->add_option("--top-p", opts->sampling.top_p, "Nucleus mass in (0, 1]")->capture_default_str();
  cmd->add_option("--seed", opts->sampling.seed, "Sampling seed")->capture_default_str();
  cmd->add_option("--threads", opts->threads, "CPU threads (0 = all cores)")->capture_default_str();
  cmd->add_flag("!--no-bos", opts->add_bos, "Do not prepend the BOS token to --prompt");
  cmd->callback([opts, cmd, &exit_code] {
    if (cmd->count("--prompt") + cmd->count("--prompt-ids") == 0)
      throw CLI::RequiredError("--prompt or --prompt-ids");
    exit_code = run_generate(*opts);
  });
}

}  // namespace starmesh::cli
