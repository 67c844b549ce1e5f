// `starmesh eval`: accuracy on synthetic long-context tasks (libs/eval) in global attention,
// Star Attention with an anchor and without, by block size (a fraction of the context) and
// anchor size, at several context lengths; through the single-process engine or a running
// mesh (--connect). Prints a table, or JSON rows with --json.
#include <fmt/core.h>

#include <chrono>
#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "commands.hpp"
#include "starmesh/attention/block_plan.hpp"
#include "starmesh/attention/star_session.hpp"
#include "starmesh/backend/device.hpp"
#include "starmesh/eval/tasks.hpp"
#include "starmesh/model/generator.hpp"
#include "starmesh/model/loaded_model.hpp"
#include "starmesh/model/tokenizer.hpp"
#include "starmesh/service/request.hpp"
#ifdef STARMESH_WITH_API
#include "api_login.hpp"
#include "starmesh/api/api_client.hpp"
#endif

namespace starmesh::cli {
namespace {

struct EvalFlags {
  std::string model_dir = STARMESH_DEFAULT_MODEL_DIR;
  std::string device = "cpu";
  int threads = 0;
  std::string connect, token_file;
  std::vector<std::string> tasks = {"niah_single", "niah_multikey", "niah_multivalue", "vt", "cwe", "fwe"};
  std::vector<int64_t> lengths = {1024, 2048, 4096};
  std::vector<std::string> modes = {"global", "star", "star-no-anchor"};
  std::vector<int> fractions = {4, 8, 16};     // block = context / fraction
  std::vector<double> anchor_fractions = {1};  // star: anchor = block x fraction
  int n = 10;
  uint64_t seed = 1;
  int max_tokens = 48;
  bool json = false;
};

// One way of encoding the context.
struct Config {
  std::string mode;  // "global", "star", "star-no-anchor"
  int fraction = 1;  // block = context / fraction (global: 1)
  double anchor_fraction = 0;
};

// One prompt as the answerer gets it.
struct Prompt {
  const std::vector<int32_t>& context;
  const std::vector<int32_t>& query;
  AttentionMode mode;
  int64_t block_size, anchor_size;
  int hosts;
};

using Answerer = std::function<Expected<std::string>(const Prompt&)>;

std::vector<Config> configs(const EvalFlags& f) {
  std::vector<Config> out;
  for (const std::string& m : f.modes) {
    if (m == "global") out.push_back({m, 1, 0});
    for (int k : f.fractions) {
      if (m == "star")
        for (double a : f.anchor_fractions) out.push_back({m, k, a});
      if (m == "star-no-anchor") out.push_back({m, k, 0});
    }
  }
  return out;
}

// The single-process engine: global attention, or Star Attention with `hosts` simulated hosts.
Answerer engine_answerer(const Transformer& model, const Tokenizer& tok, int max_tokens) {
  return [&model, &tok, max_tokens](const Prompt& p) -> Expected<std::string> {
    GenerationParams params;
    params.max_new_tokens = max_tokens;
    params.stop_ids = model.config().eos_token_ids;
    std::vector<int32_t> ids;
    auto collect = [&](int32_t t) {
      ids.push_back(t);
      return true;
    };
    const int64_t local = int64_t(p.query.size()) + max_tokens;
    if (p.mode == AttentionMode::global) {
      std::vector<int32_t> prompt = p.context;
      prompt.insert(prompt.end(), p.query.begin(), p.query.end());
      SM_ASSIGN(cache, model.make_cache(int64_t(p.context.size()) + local));
      SM_TRY(generate(model, cache, prompt, params, collect).status());
    } else {
      SM_ASSIGN(star, StarSession::encode(model, p.context, {p.block_size, p.anchor_size, p.hosts}, local));
      SM_TRY(generate_with(
                 model.backend(), [&](std::span<const int32_t> x) { return star->step(x); }, p.query, params, collect)
                 .status());
    }
    return tok.decode(ids, /*skip_special=*/true);
  };
}

#ifdef STARMESH_WITH_API
// A running mesh through the public API (ids travel: the plan is the one computed here).
Answerer mesh_answerer(ApiClient& client, int max_tokens) {
  return [&client, max_tokens](const Prompt& p) -> Expected<std::string> {
    GenerateRequest r;
    r.context_ids = p.context;
    r.query_ids = p.query;
    r.mode = p.mode;
    r.block_size = p.block_size;
    r.anchor_size = p.anchor_size;
    r.max_new_tokens = max_tokens;
    std::string text;
    SM_TRY(client
               .generate(r,
                         [&](const TokenChunk& c) {
                           text += c.text;
                           return true;
                         })
               .status());
    return text;
  };
}
#endif

struct Row {
  std::string task, mode;
  int64_t target_tokens = 0;
  double context_tokens = 0, block_size = 0, anchor_size = 0;
  int fraction = 1;
  double anchor_fraction = 0;
  int n = 0, correct = 0;
  double accuracy() const { return n ? double(correct) / n : 0; }
};

Expected<std::vector<Row>> run_eval(const EvalFlags& f, const Tokenizer& tok, const Answerer& answer) {
  std::vector<Row> rows;
  const auto cfgs = configs(f);
  for (int64_t length : f.lengths) {
    for (const std::string& task_name : f.tasks) {
      const eval::Task task = *eval::task_from_string(task_name);
      // One stream per (seed, length, task): a cell's instances do not depend on the others.
      std::seed_seq seq{uint64_t(f.seed), uint64_t(length), uint64_t(task)};
      std::mt19937_64 rng(seq);
      std::vector<Row> cell(cfgs.size());
      for (int i = 0; i < f.n; ++i) {
        const eval::Instance inst = eval::make_instance(task, length, rng);
        const std::vector<int32_t> context = tok.encode(inst.context, true), query = tok.encode(inst.query, false);
        const int64_t ctx = int64_t(context.size());
        for (size_t c = 0; c < cfgs.size(); ++c) {
          const Config& k = cfgs[c];
          const bool global = k.mode == "global";
          const int64_t block = global ? ctx : (ctx + k.fraction - 1) / k.fraction;
          const int64_t anchor = global ? 0 : std::min(block, int64_t(std::llround(double(block) * k.anchor_fraction)));
          Prompt p{context, query, global ? AttentionMode::global : AttentionMode::star, block, anchor, k.fraction};
          SM_ASSIGN(text, answer(p));
          Row& r = cell[c];
          r.task = task_name;
          r.mode = k.mode;
          r.target_tokens = length;
          r.fraction = k.fraction;
          r.anchor_fraction = k.anchor_fraction;
          r.context_tokens += double(ctx);
          r.block_size += double(block);
          r.anchor_size += double(anchor);
          ++r.n;
          r.correct += eval::is_correct(inst, text) ? 1 : 0;
        }
      }
      for (Row& r : cell) {
        r.context_tokens /= std::max(1, r.n);
        r.block_size /= std::max(1, r.n);
        r.anchor_size /= std::max(1, r.n);
        rows.push_back(r);
      }
    }
  }
  return rows;
}

std::string label(const Row& r) {
  if (r.mode == "global") return "global";
  std::string s = r.mode + " 1/" + std::to_string(r.fraction);
  if (r.mode == "star" && r.anchor_fraction != 1) s += fmt::format(" anchor {:g}", r.anchor_fraction);
  return s;
}

void print_table(const std::vector<Row>& rows) {
  // Columns: the configurations, in order of first appearance; rows: (task, length).
  std::vector<std::string> cols;
  std::map<std::pair<std::string, int64_t>, std::map<std::string, const Row*>> cells;
  std::vector<std::pair<std::string, int64_t>> order;
  for (const Row& r : rows) {
    const std::string l = label(r);
    if (std::find(cols.begin(), cols.end(), l) == cols.end()) cols.push_back(l);
    const auto key = std::make_pair(r.task, r.target_tokens);
    if (!cells.count(key)) order.push_back(key);
    cells[key][l] = &r;
  }
  std::string head = "| task | tokens | n |", rule = "|---|---|---|";
  for (const auto& c : cols) head += " " + c + " |", rule += "---|";
  fmt::print("{}\n{}\n", head, rule);
  for (const auto& key : order) {
    const auto& row = cells[key];
    const Row* any = row.begin()->second;
    std::string line = fmt::format("| {} | {:.0f} | {} |", key.first, any->context_tokens, any->n);
    for (const auto& c : cols) {
      auto it = row.find(c);
      line += it == row.end() ? " |" : fmt::format(" {:.2f} |", it->second->accuracy());
    }
    fmt::print("{}\n", line);
  }
}

void print_json(const std::vector<Row>& rows) {
  nlohmann::json out = nlohmann::json::array();
  for (const Row& r : rows)
    out.push_back({{"task", r.task},
                   {"context_tokens", r.context_tokens},
                   {"target_tokens", r.target_tokens},
                   {"mode", r.mode},
                   {"fraction", r.fraction},
                   {"block_size", r.block_size},
                   {"anchor_size", r.anchor_size},
                   {"n", r.n},
                   {"correct", r.correct},
                   {"accuracy", r.accuracy()}});
  fmt::print("{}\n", out.dump(1));
}

int fail(const std::string& what) {
  fmt::print(stderr, "error: {}\n", what);
  return 1;
}

int run(const EvalFlags& f) {
  for (const auto& t : f.tasks)
    if (!eval::task_from_string(t)) return fail("--tasks: unknown task '" + t + "'");
  auto tok = Tokenizer::load(f.model_dir + "/tokenizer.json");
  if (!tok) return fail(tok.error().message);
  const auto t0 = std::chrono::steady_clock::now();
  Expected<std::vector<Row>> rows = Error{"not run"};
  if (!f.connect.empty()) {
#ifdef STARMESH_WITH_API
    auto token = credentials(f.token_file);
    if (!token) return fail(token.error().message);
    auto client = ApiClient::connect(f.connect, *token);
    if (!client) return fail(client.error().message);
    rows = run_eval(f, *tok, mesh_answerer(**client, f.max_tokens));
#else
    return fail("--connect: this build has no public API (Cap'n Proto)");
#endif
  } else {
    auto device = parse_device(f.device);
    if (!device) return fail("--device: " + device.error().message);
    auto loaded = load_model(f.model_dir, *device, f.threads);
    if (!loaded) return fail(loaded.error().message);
    rows = run_eval(f, *tok, engine_answerer(*(*loaded)->model, *tok, f.max_tokens));
  }
  if (!rows) return fail(rows.error().message);
  if (f.json)
    print_json(*rows);
  else
    print_table(*rows);
  fmt::print(stderr, "{} rows in {:.1f} s\n", rows->size(),
             std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return 0;
}

}  // namespace

void add_eval_command(CLI::App& app, int& exit_code) {
  auto f = std::make_shared<EvalFlags>();
  CLI::App* cmd = app.add_subcommand(
      "eval", "Accuracy on synthetic long-context tasks: global vs Star Attention by block and anchor size");
  cmd->add_option("--model", f->model_dir, "Model folder (its tokenizer also tokenizes for --connect)")
      ->capture_default_str();
  cmd->add_option("--device", f->device, "cpu, cuda, cuda:N or auto (the engine; not with --connect)")
      ->capture_default_str();
  cmd->add_option("--threads", f->threads, "CPU threads (0: all cores)")->check(CLI::Range(0, 1024));
  cmd->add_option("--connect", f->connect, "HOST:PORT of a running mesh's API: evaluate through it");
  cmd->add_option("--token-file", f->token_file, "API token file for --connect (else $STARMESH_API_TOKEN)");
  cmd->add_option("--tasks", f->tasks, "Tasks (comma-separated)")
      ->delimiter(',')
      ->check(CLI::IsMember({"niah_single", "niah_multikey", "niah_multivalue", "vt", "cwe", "fwe"}))
      ->capture_default_str();
  cmd->add_option("--lengths", f->lengths, "Context lengths in tokens (comma-separated)")
      ->delimiter(',')
      ->check(CLI::Range(int64_t(64), kMaxContextTokens))
      ->capture_default_str();
  cmd->add_option("--modes", f->modes, "Modes (comma-separated)")
      ->delimiter(',')
      ->check(CLI::IsMember({"global", "star", "star-no-anchor"}))
      ->capture_default_str();
  cmd->add_option("--fractions", f->fractions, "Star: block = context / F, for each F (comma-separated)")
      ->delimiter(',')
      ->check(CLI::Range(1, kMaxHosts))
      ->capture_default_str();
  cmd->add_option("--anchor-fractions", f->anchor_fractions,
                  "Star: anchor = block x A, for each A in (0, 1] (comma-separated; star-no-anchor is A = 0)")
      ->delimiter(',')
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  cmd->add_option("--n", f->n, "Instances per task and length")->check(CLI::Range(1, 100000))->capture_default_str();
  cmd->add_option("--seed", f->seed, "Seed of the task generator")->capture_default_str();
  cmd->add_option("--max-tokens", f->max_tokens, "Tokens generated per answer at most")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  cmd->add_flag("--json", f->json, "JSON rows (task, context_tokens, mode, block_size, anchor_size, n, accuracy)");
  cmd->callback([f, &exit_code] { exit_code = run(*f); });
}

}  // namespace starmesh::cli
