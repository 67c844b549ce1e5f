#include <fmt/core.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "cli_io.hpp"
#include "commands.hpp"
#include "progress_printer.hpp"
#include "starmesh/attention/block_plan.hpp"
#include "starmesh/attention/star_session.hpp"
#include "starmesh/backend/device.hpp"
#include "starmesh/model/generator.hpp"
#include "starmesh/model/loaded_model.hpp"
#include "starmesh/model/tokenizer.hpp"
#include "starmesh/model/utf8_stream.hpp"
#include "starmesh/service/request.hpp"
#include "token_ids.hpp"

namespace starmesh::cli {
namespace {

struct GenerateOptions {
  std::string model_dir = STARMESH_DEFAULT_MODEL_DIR;
  std::string prompt;  // the query when there is no context
  std::string prompt_ids;
  std::string context, context_file, context_ids_file, query;
  bool json = false;
  bool progress = false;
  std::string mode = "global";
  StarOptions star{4096, -1, 4};
  bool no_anchor = false;
  int max_new_tokens = 32;
  SamplingParams sampling;
  int threads = 0;
  std::string device = "cpu";
  bool add_bos = true;
};

// The request as two token sequences: context (may be empty in global mode) and query.
Expected<std::pair<std::vector<int32_t>, std::vector<int32_t>>> request_tokens(const GenerateOptions& o,
                                                                               const Tokenizer& tok) {
  if (!o.prompt_ids.empty()) {
    SM_ASSIGN(ids, parse_ids("--prompt-ids", o.prompt_ids));
    return std::pair{std::vector<int32_t>{}, ids};
  }
  if (!o.context_ids_file.empty()) {  // a tokenized context: exact lengths for benchmarks
    SM_ASSIGN(ids, read_ids_file("--context-ids-file", o.context_ids_file, kMaxContextTokens));
    return std::pair{ids, tok.encode(o.query, false)};
  }
  std::string context = o.context;
  if (!o.context_file.empty()) {
    SM_ASSIGN(text, read_text_input("--context-file", o.context_file));
    context = text;
  }
  const std::string& query = o.query.empty() ? o.prompt : o.query;
  if (context.empty()) return std::pair{std::vector<int32_t>{}, tok.encode(query, o.add_bos)};
  // Tokenized apart, so both modes see the same tokens: in global mode they are concatenated.
  return std::pair{tok.encode(context, o.add_bos), tok.encode(query, false)};
}

int run_generate(const GenerateOptions& o) {
  auto fail = [](const std::string& what) {
    fmt::print(stderr, "error: {}\n", what);
    return 1;
  };
  auto device = parse_device(o.device);
  if (!device) return fail("--device: " + device.error().message);
  auto mode = attention_mode_from_string(o.mode);
  if (!mode) return fail("--mode must be 'global' or 'star', got '" + o.mode + "'");
  const bool star_mode = *mode == AttentionMode::star;
  const ProgressPrinter printer(o.json);
  auto report = [&](std::string_view what) -> ProgressFn {
    if (!o.progress) return {};
    return [&printer, what](int64_t done, int64_t total) { printer.local(what, done, total); };
  };
  auto loaded = load_model(o.model_dir, *device, o.threads, report("loading"));
  if (!loaded) return fail(loaded.error().message);
  const Transformer* model = &*(*loaded)->model;
  backend_i& backend = model->backend();
  auto tokenizer = Tokenizer::load(o.model_dir + "/tokenizer.json");
  if (!tokenizer) return fail(tokenizer.error().message);
  auto tokens = request_tokens(o, *tokenizer);
  if (!tokens) return fail(tokens.error().message);
  auto& [context, query] = *tokens;
  if (query.empty()) return fail("the query is empty: give --query (or --prompt) text");

  GenerationParams params;
  params.max_new_tokens = o.max_new_tokens;
  params.sampling = o.sampling;
  params.stop_ids = model->config().eos_token_ids;
  const int64_t capacity = int64_t(query.size()) + o.max_new_tokens;

  StepFn step;
  std::unique_ptr<StarSession> star;
  std::optional<KvCache> cache;
  std::vector<int32_t> prompt = query;
  if (star_mode) {
    if (context.empty()) return fail("--mode star needs a context (--context or --context-file)");
    StarOptions so = o.star;
    if (o.no_anchor) so.anchor_size = 0;
    auto s = StarSession::encode(*model, context, so, capacity, report("encoding"));
    if (!s) return fail(s.error().message);
    star = std::move(*s);
    if (!o.json) fmt::print(stderr, "star plan: {}\n", star->plan().describe());
    step = [&](std::span<const int32_t> ids) { return star->step(ids); };
  } else {
    prompt.insert(prompt.begin(), context.begin(), context.end());
    auto c = model->make_cache(int64_t(context.size()) + capacity);
    if (!c) return fail(c.error().message);
    cache.emplace(std::move(*c));
    step = [&](std::span<const int32_t> ids) { return model->forward(ids, *cache); };
  }

  Utf8Stream text;
  std::string error, out_text;
  std::vector<int32_t> out_ids;
  auto stats = generate_with(backend, step, prompt, params, [&](int32_t id) {
    auto bytes = tokenizer->token_bytes(id);
    if (!bytes) {
      error = bytes.error().message;
      return false;
    }
    out_ids.push_back(id);
    if (tokenizer->is_special(id)) return true;
    const std::string piece = text.push(*bytes);
    if (o.json) {
      out_text += piece;
    } else {
      std::fputs(piece.c_str(), stdout);
      std::fflush(stdout);
    }
    return true;
  });
  if (o.json) {
    out_text += text.flush();
  } else {
    std::fputs(text.flush().c_str(), stdout);
    std::fputs("\n", stdout);
  }
  if (!stats) return fail(stats.error().message);
  if (!error.empty()) return fail(error);
  const double decode_tps =
      stats->generated_tokens > 1 ? double(stats->generated_tokens - 1) / stats->decode_seconds : 0;
  if (o.json) {
    nlohmann::json j;
    j["mode"] = o.mode;
    j["device"] = o.device;
    j["context_tokens"] = context.size();
    j["query_tokens"] = query.size();
    j["prompt_tokens"] = stats->prompt_tokens;
    j["generated_tokens"] = stats->generated_tokens;
    j["ids"] = out_ids;
    j["text"] = out_text;
    j["prefill_s"] = stats->prefill_seconds;  // star: phase 2's query prefill
    j["decode_s"] = stats->decode_seconds;
    j["decode_tok_s"] = decode_tps;
    j["peak_gpu_bytes"] = backend.peak_memory_bytes();
    if (star_mode) {
      j["phase1_s"] = star->phase1_seconds();
      j["phase1_host_s"] = star->host_phase1_seconds();
      j["phase1_max_host_s"] = star->phase1_max_host_seconds();
      j["plan"] = star->plan().describe();
    }
    std::puts(j.dump().c_str());
    return 0;
  }
  if (star_mode) {
    std::string hosts;
    for (double h : star->host_phase1_seconds()) hosts += fmt::format("{}{:.1f}", hosts.empty() ? "" : " ", h * 1e3);
    fmt::print(stderr,
               "mode star: context {} tokens, phase 1 {:.1f} ms (per host: {} ms; slowest {:.1f} ms); query {} tokens, "
               "phase 2 prefill {:.1f} ms; ",
               context.size(), star->phase1_seconds() * 1e3, hosts, star->phase1_max_host_seconds() * 1e3, query.size(),
               stats->prefill_seconds * 1e3);
  } else {
    fmt::print(stderr, "mode global: prompt {} tokens, prefill {:.1f} ms ({:.0f} tok/s); ", stats->prompt_tokens,
               stats->prefill_seconds * 1e3, double(stats->prompt_tokens) / stats->prefill_seconds);
  }
  fmt::print(stderr, "generated {} tokens, {:.1f} tok/s\n", stats->generated_tokens, decode_tps);
  return 0;
}

}  // namespace

void add_generate_command(CLI::App& app, int& exit_code) {
  auto opts = std::make_shared<GenerateOptions>();
  CLI::App* cmd =
      app.add_subcommand("generate", "Generate text in one process (global or Star Attention, CPU or CUDA)");
  cmd->add_option("--model", opts->model_dir, "HF Llama checkpoint folder (config.json, safetensors, tokenizer.json)")
      ->capture_default_str();
  auto* prompt = cmd->add_option("--prompt", opts->prompt, "Prompt text (a query without context)");
  auto* ids = cmd->add_option("--prompt-ids", opts->prompt_ids, "Prompt as comma-separated token ids");
  auto* context = cmd->add_option("--context", opts->context, "Context text (the long document)");
  auto* context_file =
      cmd->add_option("--context-file", opts->context_file, "Read the context from a file (- : standard input)");
  auto* context_ids = cmd->add_option("--context-ids-file", opts->context_ids_file,
                                      "Read the context as comma-separated token ids (no BOS added)");
  auto* query = cmd->add_option("--query", opts->query, "Query text, asked after the context");
  prompt->excludes(ids)->excludes(query);
  context->excludes(context_file)->excludes(ids);
  context_file->excludes(ids);
  context_ids->excludes(ids)->excludes(context)->excludes(context_file)->excludes(prompt);
  cmd->add_option("--mode", opts->mode, "global (exact attention) or star (Star Attention)")
      ->check(CLI::IsMember({"global", "star"}))
      ->capture_default_str();
  cmd->add_option("--hosts", opts->star.hosts, "Star: simulated hosts")
      ->check(CLI::Range(1, kMaxHosts))
      ->capture_default_str();
  cmd->add_option("--block-size", opts->star.block_size, "Star: context block size in tokens")
      ->check(CLI::Range(int64_t(1), kMaxContextTokens))
      ->capture_default_str();
  cmd->add_option("--anchor-size", opts->star.anchor_size, "Star: anchor tokens (default: the block size)")
      ->check(CLI::Range(int64_t(-1), kMaxContextTokens));
  cmd->add_flag("--no-anchor", opts->no_anchor, "Star: encode blocks without the anchor (ablation)");
  cmd->add_option("--max-tokens", opts->max_new_tokens, "Tokens to generate")
      ->check(CLI::Range(0, kMaxNewTokens))
      ->capture_default_str();
  cmd->add_option("--temperature", opts->sampling.temperature, "0 = greedy")->capture_default_str();
  cmd->add_option("--top-k", opts->sampling.top_k, "0 = no limit")->capture_default_str();
  cmd->add_option("--top-p", opts->sampling.top_p, "Nucleus mass in (0, 1]")->capture_default_str();
  cmd->add_option("--seed", opts->sampling.seed, "Sampling seed")->capture_default_str();
  cmd->add_option("--threads", opts->threads, "CPU threads (0 = all cores)")
      ->check(CLI::Range(0, 1024))
      ->capture_default_str();
  cmd->add_option("--device", opts->device, "cpu, cuda, cuda:N or auto")->capture_default_str();
  cmd->add_flag("!--no-bos", opts->add_bos, "Do not prepend the BOS token to --prompt");
  cmd->add_flag("--json", opts->json, "Print one JSON object (text, ids, timings, per-host phase 1) instead of text");
  cmd->add_flag("--progress", opts->progress,
                "Print progress (model layers loaded, phase-1 blocks) on stderr, as JSON lines with --json");
  cmd->callback([opts, cmd, &exit_code] {
    if (cmd->count("--prompt") + cmd->count("--prompt-ids") + cmd->count("--query") == 0)
      throw CLI::RequiredError("--prompt, --prompt-ids or --query");
    exit_code = run_generate(*opts);
  });
}

}  // namespace starmesh::cli
