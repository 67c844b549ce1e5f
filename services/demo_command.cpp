// `starmesh demo`: a router and N workers as processes on 127.0.0.1 (CPU backend, or the
// GPU), a long document with a fact hidden in it asked through the mesh on the embedded
// default model (it was trained to find such facts), asked again over the kept context; the
// answers checked against the fact and the tokens against the single-process Star Attention
// engine, with the phase-1 / phase-2 timing; then everything stops.
#include <fmt/core.h>
#include <unistd.h>

#include <atomic>
#include <caf/io/all.hpp>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>

#include "commands.hpp"
#include "mesh_common.hpp"
#include "starmesh/attention/block_plan.hpp"
#include "starmesh/attention/star_session.hpp"
#include "starmesh/backend/device.hpp"
#include "starmesh/eval/tasks.hpp"
#include "starmesh/launch/dev_tls.hpp"
#include "starmesh/launch/local_mesh.hpp"
#include "starmesh/model/generator.hpp"
#include "starmesh/model/loaded_model.hpp"
#include "starmesh/model/tokenizer.hpp"
#include "starmesh/runtime/mesh_config.hpp"
#include "starmesh/service/request.hpp"

namespace starmesh::cli {
namespace {

using Clock = std::chrono::steady_clock;

struct DemoFlags {
  std::string model_dir = STARMESH_DEFAULT_MODEL_DIR;
  int workers = 4;
  int64_t context_tokens = 4096;
  int64_t block_size = 1024;
  int max_tokens = 32;
  std::string transport = "ucx-shm";
  std::string device = "auto";
  int threads = 1;
  uint64_t seed = 7;  // of the generated document (the fact, where it hides, the filler)
  std::string context_file, query, followup, expect;  // a document of your own
  bool verify = true;
  std::string logs;
};

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

int fail(const std::string& what) {
  fmt::print(stderr, "error: {}\n", what);
  return 1;
}

// What the demo asks: a generated document with a fact hidden in it (a needle: the model was
// trained to find such facts, tools/train) and the question for it, or a document of the
// user's own with their question (and the answer to expect, if they give one).
struct DemoDocument {
  std::string text, query, followup;
  std::optional<std::string> answer;  // checked when known
};

Expected<DemoDocument> make_demo_document(const DemoFlags& f) {
  if (f.context_file.empty()) {
    std::mt19937_64 rng(f.seed);
    eval::Instance inst = eval::make_instance(eval::Task::niah_single, f.context_tokens, rng);
    return DemoDocument{inst.context, inst.query, f.followup.empty() ? inst.query : f.followup, inst.answer};
  }
  if (f.query.empty()) return make_error(ErrorCode::invalid_argument, "--context-file needs --query");
  std::ifstream in(f.context_file, std::ios::binary);
  if (!in) return make_error(ErrorCode::invalid_argument, "cannot read --context-file '", f.context_file, "'");
  DemoDocument d{std::string(std::istreambuf_iterator<char>(in), {}), f.query,
                 f.followup.empty() ? f.query : f.followup, std::nullopt};
  if (!f.expect.empty()) d.answer = f.expect;
  return d;
}

std::string self_exe() {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string("starmesh") : p.string();
}

// One answer as the client saw it: the summary, the ids and the client-side times.
struct Answer {
  GenerateSummary summary;
  std::vector<int32_t> ids;
  std::string text;
  double first_token = 0, end_to_end = 0;
};

// A question or an answer on one line, for printing.
std::string trimmed(const std::string& s) {
  std::string out;
  for (char c : s) out += c == '\n' ? ' ' : c;
  const size_t b = out.find_first_not_of(' '), e = out.find_last_not_of(' ');
  return b == std::string::npos ? std::string() : out.substr(b, e - b + 1);
}

// Asks one question through the mesh, streaming the answer's text to stdout.
Expected<Answer> ask(MeshClient& client, const GenerateOrder& order) {
  std::mutex mu;
  std::condition_variable cv;
  std::optional<Expected<GenerateSummary>> result;
  Answer a;
  std::optional<double> first;
  const auto t_request = Clock::now();
  client.submit(
      order,
      [&](const ClientChunk& c) {
        std::lock_guard lock(mu);
        if (!first) first = since(t_request);
        a.ids.insert(a.ids.end(), c.ids.begin(), c.ids.end());
        a.text += c.text;
        std::fputs(c.text.c_str(), stdout);
        std::fflush(stdout);
        return true;
      },
      [&](Expected<GenerateSummary> s) {
        std::lock_guard lock(mu);
        result.emplace(std::move(s));
        cv.notify_all();
      });
  std::unique_lock lock(mu);
  cv.wait(lock, [&] { return result.has_value(); });
  a.end_to_end = since(t_request);
  a.first_token = first.value_or(0);
  if (!*result) return result->error();
  a.summary = result->value();
  return a;
}

// The same plan in one process (simulated hosts one after the other): the tokens of both
// questions must be identical to the mesh's. Prints the comparison; false when they differ.
Expected<bool> verify(const DemoFlags& f, const DeviceSpec& device, const std::vector<int32_t>& context, int hosts,
                      const std::vector<std::pair<std::vector<int32_t>, std::vector<int32_t>>>& asked) {
  const auto t0 = Clock::now();
  SM_ASSIGN(loaded, load_model(f.model_dir, device, f.threads));
  const Transformer& model = *loaded->model;
  backend_i& be = model.backend();
  GenerationParams p;
  p.max_new_tokens = f.max_tokens;
  p.stop_ids = model.config().eos_token_ids;
  bool same = true;
  double phase1 = 0, prefill = 0, tps = 0;
  for (const auto& [query, got] : asked) {  // a fresh session per question (its own query cache)
    SM_ASSIGN(star,
              StarSession::encode(model, context, {f.block_size, -1, hosts}, int64_t(query.size()) + f.max_tokens));
    std::vector<int32_t> want;
    SM_ASSIGN(g, generate_with(
                     be, [&](std::span<const int32_t> x) { return star->step(x); }, query, p,
                     [&](int32_t t) {
                       want.push_back(t);
                       return true;
                     }));
    same = same && want == got;
    if (phase1 == 0) {
      phase1 = star->phase1_seconds();
      prefill = g.prefill_seconds;
      tps = g.generated_tokens > 1 ? double(g.generated_tokens - 1) / g.decode_seconds : 0;
    }
  }
  fmt::print(
      "check: the single-process Star Attention engine (same plan, {} simulated hosts one after the other) "
      "gives {} tokens for both questions; there: phase 1 {:.1f} ms, prefill {:.1f} ms, {:.1f} tok/s decode "
      "({:.2f} s in all)\n",
      hosts, same ? "the same" : "DIFFERENT", phase1 * 1e3, prefill * 1e3, tps, since(t0));
  return same;
}

void print_first(const DemoFlags& f, const Answer& a, double startup) {
  const GenerateSummary& s = a.summary;
  const double tps = s.generated_tokens > 1 ? double(s.generated_tokens - 1) / s.decode_seconds : 0;
  fmt::print("\nplan: {} context tokens over {} workers ({} blocks of {})\n", s.context_tokens, s.hosts,
             (s.context_tokens + f.block_size - 1) / f.block_size, f.block_size);
  fmt::print("phase 1 (context encoding, all workers in parallel): {:.1f} ms\n", s.phase1_seconds * 1e3);
  fmt::print("phase 2: query prefill {:.1f} ms; {} tokens generated ({}), {:.1f} tok/s decode\n",
             s.phase2_prefill_seconds * 1e3, s.generated_tokens, to_string(s.stop_reason), tps);
  fmt::print("end to end: first token after {:.1f} ms, last after {:.1f} ms (mesh startup {:.2f} s not included)\n",
             a.first_token * 1e3, a.end_to_end * 1e3, startup);
}

// SIGINT / SIGTERM while the demo runs: stop the mesh's processes, remove the demo's own
// temporary folder, and end (128 + the signal). The children also get SIGTERM from the
// kernel when this process ends (--exit-with-parent), so none outlives it either way.
class SignalWatch {
 public:
  explicit SignalWatch(std::string own_dir) : own_dir_(std::move(own_dir)) {
    thread_ = std::thread([this] {
      while (!done_.load()) {
        const int sig = wait_for_signal(std::chrono::milliseconds(100));
        if (!sig || done_.load()) continue;
        fmt::print(stderr, "\nsignal {}: stopping the mesh\n", sig);
        if (LocalMesh* m = mesh_.load()) m->stop(std::chrono::milliseconds(3000));
        std::error_code ec;
        if (!own_dir_.empty()) std::filesystem::remove_all(own_dir_, ec);
        std::_Exit(128 + sig);
      }
    });
  }
  ~SignalWatch() { disarm(); }
  void watch(LocalMesh* mesh) { mesh_ = mesh; }
  // From here on the main thread stops the mesh itself.
  void disarm() {
    done_ = true;
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::string own_dir_;
  std::atomic<LocalMesh*> mesh_{nullptr};
  std::atomic<bool> done_{false};
  std::thread thread_;
};

int run_demo(const DemoFlags& f) {
  if (f.workers < 1) return fail("--workers must be >= 1");
  auto device_flag = parse_device(f.device);
  if (!device_flag) return fail("--device: " + device_flag.error().message);
  const DeviceSpec device = resolve_device(*device_flag);
  auto tok = Tokenizer::load(f.model_dir + "/tokenizer.json");
  if (!tok) return fail(tok.error().message);
  auto document = make_demo_document(f);
  if (!document) return fail(document.error().message);
  const std::vector<int32_t> context = tok->encode(document->text, true), query = tok->encode(document->query, false);

  std::string logs = f.logs;
  const bool own_logs = logs.empty();
  if (own_logs) {
    char tmpl[] = "/tmp/starmesh-demo-XXXXXX";
    if (!mkdtemp(tmpl)) return fail("cannot make a temporary folder for the logs");
    logs = tmpl;
  }
  std::filesystem::create_directories(logs);
  block_stop_signals();  // before any thread starts: the watch below takes them
  SignalWatch signals(own_logs ? logs : std::string());

  if (device.kind == DeviceSpec::Kind::cpu)
    fmt::print(
        "starmesh demo: a router and {} workers on 127.0.0.1 (CPU backend, {} thread{} each, data plane {}; mutual "
        "TLS)\n",
        f.workers, f.threads, f.threads == 1 ? "" : "s", f.transport);
  else
    fmt::print("starmesh demo: a router and {} workers on 127.0.0.1 (sharing GPU 0, data plane {}; mutual TLS)\n",
               f.workers, f.transport);
  // The mesh speaks mutual TLS, with a throwaway CA in the demo's folder.
  auto tls = make_dev_tls(logs + "/tls");
  if (!tls) return fail(tls.error().message);
  MeshConfig cfg({2, true, false, tls->mesh});
  caf::actor_system sys{cfg};
  LocalMeshOptions mo;
  mo.program = self_exe();
  mo.model_dir = f.model_dir;
  mo.workers = f.workers;
  mo.transport = f.transport;
  mo.device = device.kind == DeviceSpec::Kind::cpu ? "cpu" : "cuda";
  mo.threads_per_worker = f.threads;
  mo.block_size = f.block_size;
  mo.capacity = int64_t(context.size()) + int64_t(query.size()) + f.max_tokens + 1024;
  mo.log_dir = logs;
  mo.tls = tls->mesh;
  const auto t_start = Clock::now();
  auto mesh = LocalMesh::start(sys, mo);
  if (!mesh) return fail(mesh.error().message + "\n(logs in " + logs + ")");
  signals.watch(mesh->get());
  const double startup = since(t_start);
  fmt::print("mesh up in {:.2f} s (router on 127.0.0.1:{}; logs in {})\n", startup, (*mesh)->router_port(), logs);
  std::fflush(stdout);
  // A failed question ends the demo with the error and the end of the mesh's logs.
  auto give_up = [&](const Error& e) {
    signals.disarm();
    const std::string tail = (*mesh)->log_tail();
    (*mesh)->stop();
    return fail(e.message + (tail.empty() ? "" : "\n" + tail));
  };

  GenerateOrder order;
  order.request.context_text = document->text;
  order.request.query_text = document->query;
  order.request.mode = AttentionMode::star;
  order.request.block_size = f.block_size;
  order.request.max_new_tokens = f.max_tokens;
  order.request.keep_context = true;  // the follow-up question asks it again without phase 1
  fmt::print("context: {} tokens, blocks of {} (anchor = block){}\nquery ({} tokens): {}\nanswer:", context.size(),
             f.block_size, document->answer ? "; a fact is hidden in it" : "", query.size(), trimmed(document->query));
  std::fflush(stdout);
  auto first = ask((*mesh)->client(), order);
  fmt::print("\n");
  if (!first) return give_up(first.error());
  print_first(f, *first, startup);

  // Encode once, ask many times: a second question over the kept context.
  GenerateOrder again;
  again.request.query_text = document->followup;
  again.request.max_new_tokens = f.max_tokens;
  again.request.context_id = first->summary.context_id;
  fmt::print("\nasked again over the kept context {} ({}):\nanswer:", again.request.context_id.hex(),
             document->followup == document->query ? "the same question" : trimmed(document->followup));
  std::fflush(stdout);
  auto second = ask((*mesh)->client(), again);
  fmt::print("\n");
  if (!second) return give_up(second.error());
  fmt::print(
      "\nno phase 1 (attached to the kept shards in {:.1f} ms); first token after {:.1f} ms, last after {:.1f} ms\n",
      second->summary.phase1_seconds * 1e3, second->first_token * 1e3, second->end_to_end * 1e3);
  signals.disarm();
  (*mesh)->stop();

  int code = 0;
  if (document->answer) {  // the model's answers against the fact hidden in the document
    for (const auto* a : {&*first, &*second}) {
      const bool right = eval::is_correct(eval::Instance{eval::Task::niah_single, "", "", *document->answer}, a->text);
      fmt::print("check: the hidden answer is {}: the mesh answered {}{}\n", *document->answer, trimmed(a->text),
                 right ? ", correct" : ", WRONG");
      if (!right) code = 1;
    }
  }
  if (f.verify) {
    auto same = verify(f, device, context, first->summary.hosts,
                       {{query, first->ids}, {tok->encode(document->followup, false), second->ids}});
    if (!same) return fail(same.error().message);
    if (!*same) code = 1;
  }
  if (own_logs && code == 0)
    std::filesystem::remove_all(logs);
  else
    fmt::print("logs: {}\n", logs);
  return code;
}

}  // namespace

void add_demo_command(CLI::App& app, int& exit_code) {
  auto f = std::make_shared<DemoFlags>();
  CLI::App* cmd = app.add_subcommand(
      "demo",
      "Start a router and N workers on 127.0.0.1, answer a long-context question and a follow-up over the kept "
      "context, stop everything");
  cmd->add_option("--model", f->model_dir, "Model folder")->capture_default_str();
  cmd->add_option("--workers", f->workers, "Context workers (processes)")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  cmd->add_option("--context-tokens", f->context_tokens, "Length of the generated document in tokens")
      ->check(CLI::Range(int64_t(1), kMaxContextTokens))
      ->capture_default_str();
  cmd->add_option("--seed", f->seed, "Seed of the generated document (its hidden fact and filler)")
      ->capture_default_str();
  cmd->add_option("--context-file", f->context_file, "Use this file as the context instead (with --query)");
  cmd->add_option("--query", f->query, "The question about --context-file");
  cmd->add_option("--followup", f->followup,
                  "A second question, asked over the kept context (no phase 1); default: the first again");
  cmd->add_option("--expect", f->expect, "The answer to expect for --context-file (checked)");
  cmd->add_option("--block-size", f->block_size, "Context block size in tokens")
      ->check(CLI::Range(int64_t(1), kMaxContextTokens))
      ->capture_default_str();
  cmd->add_option("--max-tokens", f->max_tokens, "Tokens to generate")
      ->check(CLI::Range(0, kMaxNewTokens))
      ->capture_default_str();
  cmd->add_option("--transport", f->transport, "Data plane: ucx-shm, ucx-tcp or ucx-auto")->capture_default_str();
  cmd->add_option("--device", f->device, "auto (the GPU if present), cpu or cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))
      ->capture_default_str();
  cmd->add_option("--threads", f->threads, "Compute threads per worker")
      ->check(CLI::Range(0, 1024))
      ->capture_default_str();
  cmd->add_flag("!--no-verify", f->verify, "Skip the check against the single-process engine");
  cmd->add_option("--logs", f->logs, "Keep the router's and workers' logs in this folder");
  cmd->callback([f, &exit_code] { exit_code = run_demo(*f); });
}

}  // namespace starmesh::cli
