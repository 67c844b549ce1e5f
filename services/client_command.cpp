// `starmesh client`: the public API from the command line (generate, info).
#include <fmt/core.h>

#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "api_login.hpp"
#include "cli_io.hpp"
#include "commands.hpp"
#include "progress_printer.hpp"
#include "starmesh/api/api_client.hpp"
#include "starmesh/api/api_server.hpp"
#include "starmesh/attention/block_plan.hpp"
#include "token_ids.hpp"

namespace starmesh::cli {
namespace {

using Clock = std::chrono::steady_clock;

struct ClientOptions {
  std::string connect, token_file;
  std::string context, context_file, context_ids, context_ids_file;
  std::string context_id;  // a kept context's 32 hex digits
  bool json = false;
  bool progress = false;
  std::string query, prompt_ids;
  std::string mode;  // empty: star with a context, global without
  std::string priority = "normal";
  bool no_anchor = false;
  GenerateRequest request;
};

Expected<GenerateRequest> build_request(const ClientOptions& o) {
  GenerateRequest r = o.request;
  if (!o.context_id.empty()) {
    SM_ASSIGN(id, ContextId::parse(o.context_id));
    r.context_id = id;
  }
  r.query_text = o.query;
  if (!o.prompt_ids.empty()) {
    SM_ASSIGN(ids, parse_ids("--prompt-ids", o.prompt_ids));
    r.query_ids = ids;
  }
  r.context_text = o.context;
  if (!o.context_file.empty()) {
    SM_ASSIGN(text, read_text_input("--context-file", o.context_file));
    r.context_text = std::move(text);
  }
  if (!o.context_ids_file.empty()) {
    SM_ASSIGN(ids, read_ids_file("--context-ids-file", o.context_ids_file, kMaxContextTokens));
    r.context_ids = ids;
  }
  if (!o.context_ids.empty()) {
    SM_ASSIGN(ids, parse_ids("--context-ids", o.context_ids));
    r.context_ids = ids;
  }
  const bool has_context = !r.context_text.empty() || !r.context_ids.empty();
  if (!o.mode.empty()) {
    auto mode = attention_mode_from_string(o.mode);
    if (!mode) return make_error(ErrorCode::invalid_argument, "--mode must be 'global' or 'star', got '", o.mode, "'");
    r.mode = *mode;
  } else {
    r.mode = has_context || !r.context_id.empty() ? AttentionMode::star : AttentionMode::global;
  }
  if (o.no_anchor) r.anchor_size = 0;
  auto priority = priority_from_string(o.priority);
  if (!priority)
    return make_error(ErrorCode::invalid_argument, "--priority must be low, normal or high, got '", o.priority, "'");
  r.priority = *priority;
  return r;
}

double ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

int fail(const std::string& what) {
  fmt::print(stderr, "error: {}\n", what);
  return 1;
}

int run_generate(const ClientOptions& o) {
  auto request = build_request(o);
  if (!request) return fail(request.error().message);
  auto token = credentials(o.token_file);
  if (!token) return fail(token.error().message);
  const auto t0 = Clock::now();
  auto client = ApiClient::connect(o.connect, *token);
  if (!client) return fail(client.error().message);
  const auto t_connected = Clock::now();
  Clock::time_point t_first{};
  int64_t received = 0;
  std::vector<int32_t> ids;
  std::string text;
  const ProgressPrinter printer(o.json);
  std::function<void(const Progress&)> on_progress;
  if (o.progress) on_progress = [&](const Progress& p) { printer.request(p); };
  auto summary = (*client)->generate(
      *request,
      [&](const TokenChunk& chunk) {
        if (received == 0) t_first = Clock::now();
        received += int64_t(chunk.ids.size());
        if (o.json) {
          ids.insert(ids.end(), chunk.ids.begin(), chunk.ids.end());
          text += chunk.text;
        } else {
          std::fputs(chunk.text.c_str(), stdout);
          std::fflush(stdout);
        }
        return true;
      },
      on_progress);
  const auto t_end = Clock::now();
  if (!o.json) {
    std::fputs("\n", stdout);
    std::fflush(stdout);
  }
  if (!summary) return fail(summary.error().message);
  const auto& s = *summary;
  if (o.json) {  // one object for scripts: what came back, the client's timings, the server's
    nlohmann::json j;
    j["ids"] = ids;
    j["text"] = text;
    j["mode"] = to_string(request->mode);
    j["request_id"] = s.request_id;
    j["context_id"] = s.context_id.empty() ? "" : s.context_id.hex();
    j["stop"] = to_string(s.stop_reason);
    j["context_tokens"] = s.context_tokens;
    j["query_tokens"] = s.query_tokens;
    j["generated_tokens"] = s.generated_tokens;
    j["hosts"] = s.hosts;
    j["ttft_s"] = received > 0 ? ms(t_first - t_connected) / 1e3 : 0.0;
    j["total_s"] = ms(t_end - t_connected) / 1e3;
    j["phase1_s"] = s.phase1_seconds;
    j["phase1_max_host_s"] = s.phase1_max_host_seconds;
    j["phase2_prefill_s"] = s.phase2_prefill_seconds;
    j["decode_s"] = s.decode_seconds;
    std::puts(j.dump().c_str());
    return 0;
  }
  fmt::print(stderr, "connected in {:.1f} ms; ", ms(t_connected - t0));
  if (received > 0)
    fmt::print(stderr, "first token after {:.1f} ms; {} tokens in {:.1f} ms ({:.1f} tok/s after the first)\n",
               ms(t_first - t_connected), received, ms(t_end - t_connected),
               received > 1 ? double(received - 1) * 1e3 / ms(t_end - t_first) : 0.0);
  else
    fmt::print(stderr, "no tokens in {:.1f} ms\n", ms(t_end - t_connected));
  fmt::print(stderr,
             "server: request {}, mode {}, context {} tokens on {} hosts, phase 1 {:.1f} ms (slowest host {:.1f} ms); "
             "query {} "
             "tokens, phase 2 prefill {:.1f} ms; generated {} tokens, decode {:.1f} ms; stop: {}\n",
             s.request_id, to_string(request->mode), s.context_tokens, s.hosts, s.phase1_seconds * 1e3,
             s.phase1_max_host_seconds * 1e3, s.query_tokens, s.phase2_prefill_seconds * 1e3, s.generated_tokens,
             s.decode_seconds * 1e3, to_string(s.stop_reason));
  if (!s.context_id.empty())
    fmt::print(stderr, "kept context: {} (ask it again with --context-id {})\n", s.context_id.hex(),
               s.context_id.hex());
  return 0;
}

int run_info(const std::string& address, const std::string& token_file) {
  auto token = credentials(token_file);
  if (!token) return fail(token.error().message);
  auto client = ApiClient::connect(address, *token);
  if (!client) return fail(client.error().message);
  auto info = (*client)->info();
  if (!info) return fail(info.error().message);
  fmt::print("model: {}\nworkers: {}\nversion: {}\nmax context tokens: {}\n", info->model, info->workers, info->version,
             info->max_context_tokens);
  return 0;
}

void add_generate(CLI::App& client, int& exit_code) {
  auto o = std::make_shared<ClientOptions>();
  auto& r = o->request;
  CLI::App* cmd = client.add_subcommand("generate", "Generate on a starmesh server, streaming the text to stdout");
  cmd->add_option("--connect", o->connect, "Server address, host:port")->required();
  cmd->add_option("--token-file", o->token_file, "Log in with the token in this file (else $STARMESH_API_TOKEN)");
  auto* context = cmd->add_option("--context", o->context, "Context text (the long document)");
  auto* context_file =
      cmd->add_option("--context-file", o->context_file, "Read the context from a file (- : standard input)");
  auto* context_ids = cmd->add_option("--context-ids", o->context_ids, "Context as comma-separated token ids");
  auto* query = cmd->add_option("--query,--prompt", o->query, "Query text, asked after the context");
  auto* ids = cmd->add_option("--prompt-ids,--query-ids", o->prompt_ids, "Query as comma-separated token ids");
  context->excludes(context_file)->excludes(context_ids);
  context_file->excludes(context_ids);
  auto* context_ids_file = cmd->add_option("--context-ids-file", o->context_ids_file,
                                           "Read the context as comma-separated token ids (a long one)");
  context_ids_file->excludes(context)->excludes(context_file)->excludes(context_ids);
  query->excludes(ids);
  cmd->add_option("--mode", o->mode, "star or global (default: star with a context, global without)")
      ->check(CLI::IsMember({"star", "global"}));
  cmd->add_option("--priority", o->priority,
                  "low, normal or high: among this token's own requests (never ahead of other tokens')")
      ->check(CLI::IsMember({"low", "normal", "high"}))
      ->capture_default_str();
  cmd->add_option("--block-size", r.block_size, "Star: context block size in tokens (0: the server's default)")
      ->capture_default_str();
  cmd->add_option("--anchor-size", r.anchor_size, "Star: anchor tokens (-1: the block size)")->capture_default_str();
  cmd->add_flag("--no-anchor", o->no_anchor, "Star: encode blocks without the anchor (ablation)");
  cmd->add_option("--max-hosts", r.max_hosts, "Star: at most this many workers (0: all)")->capture_default_str();
  cmd->add_option("--max-tokens", r.max_new_tokens, "Tokens to generate")->capture_default_str();
  cmd->add_option("--temperature", r.sampling.temperature, "0 = greedy")->capture_default_str();
  cmd->add_option("--top-k", r.sampling.top_k, "0 = no limit")->capture_default_str();
  cmd->add_option("--top-p", r.sampling.top_p, "Nucleus mass in (0, 1]")->capture_default_str();
  cmd->add_option("--seed", r.sampling.seed, "Sampling seed")->capture_default_str();
  cmd->add_flag("!--no-bos", r.add_bos, "Do not prepend BOS when the server tokenizes text");
  cmd->add_flag("--keep-context", r.keep_context,
                "Keep the context encoded after this request; the summary prints its id for --context-id");
  cmd->add_flag("--json", o->json,
                "Print one JSON object (ids, text, request and context ids, timings) instead of the text");
  cmd->add_flag("--progress", o->progress,
                "Print the request's progress (queued, phase-1 blocks, prefill) on stderr, as JSON lines with --json");
  cmd->add_option("--context-id", o->context_id,
                  "Ask a context kept by an earlier request, by the 32 hex digits it printed (give no context)");
  cmd->callback([o, cmd, &exit_code] {
    if (cmd->count("--query") + cmd->count("--prompt-ids") == 0)
      throw CLI::RequiredError("--query (or --prompt) or --prompt-ids");
    exit_code = run_generate(*o);
  });
}

}  // namespace

void add_client_command(CLI::App& app, int& exit_code) {
  CLI::App* client = app.add_subcommand("client", "Talk to a starmesh server over the public API");
  client->require_subcommand(1);
  add_generate(*client, exit_code);
  auto drop = std::make_shared<ClientOptions>();
  CLI::App* drop_cmd = client->add_subcommand("drop-context", "Free a context kept with --keep-context");
  drop_cmd->add_option("--connect", drop->connect, "Server address, host:port")->required();
  drop_cmd->add_option("--token-file", drop->token_file,
                       "Log in with the token in this file (else $STARMESH_API_TOKEN)");
  drop_cmd->add_option("--context-id", drop->context_id, "The kept context (32 hex digits)")->required();
  drop_cmd->callback([drop, &exit_code] {
    auto token = credentials(drop->token_file);
    if (!token) {
      exit_code = fail(token.error().message);
      return;
    }
    auto c = ApiClient::connect(drop->connect, *token);
    if (!c) {
      exit_code = fail(c.error().message);
      return;
    }
    auto id = ContextId::parse(drop->context_id);
    if (!id) {
      exit_code = fail("--context-id: " + id.error().message);
      return;
    }
    const Status s = (*c)->drop_context(*id);
    exit_code = s ? 0 : fail(s.message());
  });
  auto address = std::make_shared<std::string>(), token_file = std::make_shared<std::string>();
  CLI::App* info = client->add_subcommand("info", "What a starmesh server serves");
  info->add_option("--connect", *address, "Server address, host:port")->required();
  info->add_option("--token-file", *token_file, "Log in with the token in this file (else $STARMESH_API_TOKEN)");
  info->callback([address, token_file, &exit_code] { exit_code = run_info(*address, *token_file); });
}

}  // namespace starmesh::cli
