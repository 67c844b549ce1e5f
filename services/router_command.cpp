// `starmesh router`: the mesh's router. Workers register with it; it places requests on
// them and serves the public API (with --api-listen, when the API is built).
#include <fmt/core.h>
#include <spdlog/spdlog.h>

#include <caf/io/all.hpp>
#include <filesystem>
#include <memory>
#include <mutex>
#include <random>
#include <string>

#include "commands.hpp"
#include "mesh_common.hpp"
#include "starmesh/attention/block_plan.hpp"
#include "starmesh/runtime/mesh_client.hpp"
#include "starmesh/runtime/mesh_config.hpp"
#include "starmesh/runtime/router.hpp"
#include "starmesh/service/request.hpp"
#ifdef STARMESH_WITH_API
#include "starmesh/api/api_server.hpp"
#endif
#include "starmesh/service/api_tokens.hpp"
#ifdef STARMESH_WITH_HTTP
#include "chat_renderer.hpp"
#include "starmesh/http/openai_server.hpp"
#endif

namespace starmesh::cli {
namespace {

// What /healthz asks of a public door (the Cap'n Proto API, the HTTP door), from the metrics
// server's threads: whether the door being watched still serves (true while none is).
template <class Door>
class DoorProbe {
 public:
  void watch(const Door* door) {
    std::lock_guard lock(mutex_);
    door_ = door;
  }
  bool serving() const {
    std::lock_guard lock(mutex_);
    return door_ == nullptr || door_->serving();
  }

 private:
  mutable std::mutex mutex_;
  const Door* door_ = nullptr;
};
// Stops a probe looking at its door before the door goes (the health checks may outlive it).
template <class Door>
struct Unwatch {
  DoorProbe<Door>& probe;
  ~Unwatch() { probe.watch(nullptr); }
};
#ifdef STARMESH_WITH_API
using ApiProbe = DoorProbe<ApiServer>;
#else
struct ApiProbe {
  bool serving() const { return true; }
};
#endif
#ifdef STARMESH_WITH_HTTP
using HttpProbe = DoorProbe<http::OpenAiServer>;
#else
struct HttpProbe {
  bool serving() const { return true; }
};
#endif

struct RouterFlags {
  std::string listen = "127.0.0.1:7400";
  std::string model_dir = STARMESH_DEFAULT_MODEL_DIR;
  int64_t block_size = 1024;
  double control_timeout = 10, phase1_timeout = 600, step_timeout = 60, queue_timeout = 60, context_ttl = 1800;
  double heartbeat = 1, liveness_timeout = 5;
  int max_replans = 3;
  uint64_t first_request_id = 0;  // 0: random
  size_t max_queued = 256;
  int64_t max_stale_tokens = int64_t(1) << 24;
  std::string port_file;
  std::string api_listen, api_tokens_file, api_port_file;
  int api_max_connections = 1024;
  double api_login_timeout = 10;
  std::string http_listen, http_port_file, chat_template;
  size_t http_max_body_bytes = size_t(8) << 20;
  int http_max_threads = 64, http_max_connections = 256;
  double http_read_timeout = 30;
  std::string metrics_listen, metrics_port_file;
  int actor_threads = 2;
  bool exit_with_parent = false;
  MeshTls tls;         // --tls-ca, --tls-cert, --tls-key
  ScaleOptions scale;  // --scale-*
};

int fail(const std::string& what) {
  fmt::print(stderr, "error: {}\n", what);
  return 1;
}

#ifdef STARMESH_WITH_HTTP
// The OpenAI-compatible door (--http-listen), with the model's chat template when it has one.
Expected<std::unique_ptr<http::OpenAiServer>> start_http_door(const RouterFlags& f, generate_service_i& service,
                                                              const std::string& model_name,
                                                              const std::vector<std::string>& tokens,
                                                              int64_t open_files) {
  http::OpenAiServerOptions o;
  o.model = model_name;
  o.tokens = tokens;
  o.max_body_bytes = f.http_max_body_bytes;
  o.max_threads = f.http_max_threads;
  o.max_connections = f.http_max_connections;
  o.read_deadline = seconds_flag(f.http_read_timeout);
  SM_ASSIGN(chat, chat_renderer(f.chat_template, f.model_dir));
  o.chat = std::move(chat);
  if (open_files < int64_t(f.http_max_connections) + 256)
    spdlog::warn("--http-max-connections {} is close to this process's open-file limit of {}", f.http_max_connections,
                 open_files);
  SM_ASSIGN(door, http::OpenAiServer::start(service, f.http_listen, std::move(o)));
  const std::string host = f.http_listen.substr(0, f.http_listen.rfind(':'));
  spdlog::info("HTTP door (OpenAI-compatible) on {}:{}{}", host, door->port(),
               o.chat ? "" : " (no chat template: /v1/chat/completions answers 404)");
  fmt::print("starmesh HTTP listening on {}:{}\n", host, door->port());
  std::fflush(stdout);
  if (!f.http_port_file.empty()) SM_TRY(write_port_file(f.http_port_file, door->port()));
  return door;
}
#endif

int run_router(const RouterFlags& f) {
  if (f.exit_with_parent) exit_with_parent();
  if (Status tls = f.tls.check(); !tls) return fail(tls.message());
  block_stop_signals();
  log_to_stderr("router");
  auto listen = parse_host_port(f.listen, "--listen");
  if (!listen) return fail(listen.error().message);
  if (f.control_timeout <= 0 || f.phase1_timeout <= 0 || f.step_timeout <= 0)
    return fail("timeouts must be > 0 seconds");
  if (f.queue_timeout < 0) return fail("--queue-timeout must be >= 0 seconds (0: no queue)");
  if (f.context_ttl < 0) return fail("--context-ttl must be >= 0 seconds (0: no limit)");
  RouterOptions options;
  options.model_dir = f.model_dir;
  options.block_size = f.block_size;
  options.control_timeout = seconds_flag(f.control_timeout);
  options.phase1_timeout = seconds_flag(f.phase1_timeout);
  options.step_timeout = seconds_flag(f.step_timeout);
  options.heartbeat = seconds_flag(f.heartbeat);
  options.liveness_timeout = seconds_flag(f.liveness_timeout);
  options.max_replans = f.max_replans;
  // A random start (see RouterOptions::first_request_id); the flag pins it for tests.
  options.first_request_id = f.first_request_id != 0
                                 ? f.first_request_id
                                 : 1 + ((uint64_t(std::random_device{}()) << 16) | (std::random_device{}() & 0xffffu));
  options.admission.queue_timeout = seconds_flag(f.queue_timeout);
  options.admission.context_ttl = seconds_flag(f.context_ttl);
  options.admission.max_queued = f.max_queued;
  options.admission.max_stale_tokens = f.max_stale_tokens;
  if (std::string bad = check_scale_options(f.scale); !bad.empty()) return fail("--scale-*: " + bad);
  options.scale = f.scale;
  auto context = load_router_context(options);
  if (!context) return fail(context.error().message);
  [[maybe_unused]] const int64_t open_files = raise_open_file_limit();
  // /healthz: the router actor runs, and the public API's loop if there is one; /readyz: and
  // a worker has registered.
  auto running = std::make_shared<std::atomic<bool>>(false);
  auto api_probe = std::make_shared<ApiProbe>();
  auto http_probe = std::make_shared<HttpProbe>();
  metrics::HealthChecks health;
  health.live = [router_live = live_while(running, "router"), api_probe, http_probe]() -> Status {
    SM_TRY(router_live());
    if (!api_probe->serving()) return make_error(ErrorCode::unavailable, "the public API's loop has stopped");
    if (!http_probe->serving()) return make_error(ErrorCode::unavailable, "the HTTP door has stopped");
    return {};
  };
  health.ready = [live = health.live, m = (*context)->metrics]() -> Status {
    SM_TRY(live());
    if (m->workers.value() < 1) return make_error(ErrorCode::unavailable, "no worker has registered yet");
    return {};
  };
  publish_build_info((*context)->metrics->registry, STARMESH_VERSION, served_model_name(f.model_dir));
  auto metrics_endpoint =
      serve_metrics((*context)->metrics->registry, f.metrics_listen, f.metrics_port_file, std::move(health));
  if (!metrics_endpoint) return fail(metrics_endpoint.error().message);

  MeshConfig cfg({f.actor_threads, true, false, f.tls});
  caf::actor_system sys{cfg};
  RouterActor router = spawn_router(sys, *context);
  StopOnExit<RouterActor> stop_router{router};  // every return below, errors included
  track_running(router, running);
  auto port = publish_actor(router, listen->host, listen->port);
  if (!port) return fail(port.error().message);
  if (!f.port_file.empty())
    if (Status s = write_port_file(f.port_file, *port); !s) return fail(s.message());
  spdlog::info("listening on {}:{} for workers (model {}, {})", listen->host, *port, f.model_dir, (*context)->model);
  fmt::print("starmesh router listening on {}:{}\n", listen->host, *port);
  std::fflush(stdout);

  MeshClient service(sys, router, options.control_timeout);
  // Both doors take the same tokens: the token a client proves is its tenant on either.
  std::vector<std::string> tokens;
  if (!f.api_tokens_file.empty()) {
    auto loaded = load_api_tokens(f.api_tokens_file);
    if (!loaded) return fail(loaded.error().message);
    tokens = std::move(*loaded);
  } else if (!f.api_listen.empty() || !f.http_listen.empty()) {
    spdlog::warn("the public API is open: any client may use it (give --api-tokens-file to require a login)");
  }
  const std::string model_name = served_model_name(f.model_dir);
#ifdef STARMESH_WITH_HTTP
  std::unique_ptr<http::OpenAiServer> http_door;
  Unwatch<http::OpenAiServer> unwatch_http{*http_probe};
  if (!f.http_listen.empty()) {
    auto door = start_http_door(f, service, model_name, tokens, open_files);
    if (!door) return fail(door.error().message);
    http_door = std::move(*door);
    http_probe->watch(http_door.get());
  }
#else
  if (!f.http_listen.empty()) return fail("--http-listen: this build has no HTTP door");
#endif
#ifdef STARMESH_WITH_API
  std::unique_ptr<ApiServer> api;
  Unwatch<ApiServer> unwatch{*api_probe};
  if (!f.api_listen.empty()) {
    ApiLimits limits;
    limits.max_connections = f.api_max_connections;
    limits.login_timeout = seconds_flag(f.api_login_timeout);
    if (open_files < int64_t(f.api_max_connections) + 256)
      spdlog::warn("--api-max-connections {} is close to this process's open-file limit of {}", f.api_max_connections,
                   open_files);
    auto started = ApiServer::start(
        service, f.api_listen,
        [&service, model_name] {
          ServerInfo info;
          info.model = model_name;
          if (auto m = service.members()) {
            info.workers = uint32_t(m->size());
            for (const WorkerView& w : *m) info.max_context_tokens += std::max<int64_t>(0, w.info.kv_free - w.reserved);
          }
          return info;
        },
        tokens, limits);
    if (!started) return fail(started.error().message);
    api = std::move(*started);
    api_probe->watch(api.get());
    const std::string api_host = f.api_listen.substr(0, f.api_listen.rfind(':'));
    spdlog::info("public API on {}:{}", api_host, api->port());
    fmt::print("starmesh API listening on {}:{}\n", api_host, api->port());
    std::fflush(stdout);
    if (!f.api_port_file.empty())
      if (Status s = write_port_file(f.api_port_file, api->port()); !s) return fail(s.message());
  }
#else
  if (!f.api_listen.empty()) return fail("--api-listen: this build has no public API (Cap'n Proto)");
  if (!f.api_port_file.empty()) return fail("--api-port-file: this build has no public API (Cap'n Proto)");
#endif

  int sig = 0;
  while (!sig && running->load()) sig = wait_for_signal(std::chrono::milliseconds(200));
#ifdef STARMESH_WITH_API
  if (api) api->stop();
#endif
#ifdef STARMESH_WITH_HTTP
  if (http_door) http_door->stop();
#endif
  if (!sig) return fail("the router actor ended unexpectedly: stopping (the mesh cannot serve without it)");
  spdlog::info("signal {}: stopping", sig);
  return 0;
}

}  // namespace

void add_router_command(CLI::App& app, int& exit_code) {
  auto f = std::make_shared<RouterFlags>();
  CLI::App* cmd = app.add_subcommand("router", "Run the mesh router: workers register here, requests are placed here");
  cmd->fallthrough();  // --config (in starmesh_main.cpp) reads a [router] / [worker] section
  cmd->add_option("--listen", f->listen, "HOST:PORT for workers and clients (port 0: any free one)")
      ->capture_default_str();
  cmd->add_option("--model", f->model_dir, "Model folder (config.json, tokenizer.json) the workers serve")
      ->capture_default_str();
  cmd->add_option("--block-size", f->block_size, "Default context block size in tokens")
      ->check(CLI::Range(int64_t(1), kMaxContextTokens))
      ->capture_default_str();
  cmd->add_option("--control-timeout", f->control_timeout, "Seconds a worker may take to answer a control message")
      ->check(CLI::Range(0.001, 2592000.0))
      ->capture_default_str();
  cmd->add_option("--phase1-timeout", f->phase1_timeout, "Seconds a worker may take for phase 1")
      ->check(CLI::Range(0.001, 2592000.0))
      ->capture_default_str();
  cmd->add_option("--heartbeat", f->heartbeat, "Seconds between liveness probes of every worker (0: none)")
      ->check(CLI::Range(0.0, 3600.0))
      ->capture_default_str();
  cmd->add_option(
         "--liveness-timeout", f->liveness_timeout,
         "Seconds a worker may take to answer a probe before it is taken out of the mesh and its requests fail")
      ->check(CLI::Range(0.1, 3600.0))
      ->capture_default_str();
  cmd->add_option("--first-request-id", f->first_request_id,
                  "The id of the first request (0: random, so a restarted router reuses no data-plane group)")
      ->check(CLI::Range(uint64_t(0), uint64_t(1) << 47));
  cmd->add_option("--max-replans", f->max_replans,
                  "Times a request that loses a worker is planned again on the workers left (0: it fails)")
      ->check(CLI::Range(0, 16))
      ->capture_default_str();
  cmd->add_option("--step-timeout", f->step_timeout, "Seconds between two generated tokens before a request fails")
      ->check(CLI::Range(0.001, 2592000.0))
      ->capture_default_str();
  cmd->add_option("--queue-timeout", f->queue_timeout,
                  "Seconds a request that must wait for KV capacity may wait (0: refuse it at once)")
      ->check(CLI::Range(0.0, 86400.0))
      ->capture_default_str();
  cmd->add_option("--context-ttl", f->context_ttl,
                  "Seconds a kept context may sit unused before it is dropped (0: until its KV is needed)")
      ->check(CLI::Range(0.0, 31536000.0))
      ->capture_default_str();
  cmd->add_option("--max-queued", f->max_queued, "Requests that may wait for KV capacity at once")
      ->check(CLI::Range(size_t(0), size_t(1) << 20))
      ->capture_default_str();
  cmd->add_option("--max-stale-context-tokens", f->max_stale_tokens,
                  "Token ids the router keeps for kept contexts that lost a worker, to encode them again on their "
                  "next question (4 bytes each); past it such a context is dropped")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 32))
      ->capture_default_str();
  cmd->add_option("--port-file", f->port_file, "Write the port listened on to this file");
  cmd->add_option("--api-listen", f->api_listen, "HOST:PORT of the public API (Cap'n Proto); empty: off");
  cmd->add_option("--api-port-file", f->api_port_file, "Write the API's port to this file (with --api-listen HOST:0)");
  cmd->add_option("--api-max-connections", f->api_max_connections,
                  "API connections served at once; more are closed as they come")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  cmd->add_option("--api-login-timeout", f->api_login_timeout,
                  "Seconds an API connection may take to log in before it is closed")
      ->check(CLI::Range(0.1, 3600.0))
      ->capture_default_str();
  cmd->add_option("--api-tokens-file", f->api_tokens_file,
                  "Clients log in with one of these tokens (one per line), on the API and as HTTP Bearer tokens; "
                  "without it both doors are open");
  cmd->add_option("--http-listen", f->http_listen,
                  "HOST:PORT of the OpenAI-compatible HTTP door (same tokens as the API); empty: off");
  cmd->add_option("--http-port-file", f->http_port_file, "Write the HTTP door's port to this file");
  cmd->add_option("--http-max-body-bytes", f->http_max_body_bytes, "Largest HTTP request body accepted")
      ->check(CLI::Range(size_t(1024), kMaxTextBytes * 2))
      ->capture_default_str();
  cmd->add_option("--http-max-threads", f->http_max_threads,
                  "HTTP requests answered at once (a streaming one holds its thread until it ends)")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  cmd->add_option("--http-max-connections", f->http_max_connections,
                  "HTTP connections open at once (answered or waiting for a thread); more get 429")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  cmd->add_option("--http-read-timeout", f->http_read_timeout,
                  "Seconds an HTTP request's headers and body may take to arrive")
      ->check(CLI::Range(0.1, 3600.0))
      ->capture_default_str();
  cmd->add_option("--chat-template", f->chat_template,
                  "tokenizer_config.json whose chat_template the HTTP door's chat uses (default: the model's)");
  cmd->add_option("--metrics-listen", f->metrics_listen, "HOST:PORT of the Prometheus /metrics endpoint; empty: off");
  cmd->add_option("--metrics-port-file", f->metrics_port_file, "Write the metrics port to this file");
  cmd->add_option("--actor-threads", f->actor_threads, "Threads of the actor scheduler")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  // The scale rule behind starmesh_desired_workers (docs/SCALING.md).
  cmd->add_option("--scale-target-kv", f->scale.target_kv_utilisation,
                  "Scale rule: the share of the workers' KV the load should fill")
      ->check(CLI::Range(0.01, 1.0))
      ->capture_default_str();
  cmd->add_option("--scale-target-requests", f->scale.target_requests_per_worker,
                  "Scale rule: requests (running and queued) per worker")
      ->check(CLI::Range(0.01, 1e6))
      ->capture_default_str();
  cmd->add_option("--scale-kept-weight", f->scale.kept_weight,
                  "Scale rule: how much kept contexts' KV counts as demand (they can be evicted)")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  cmd->add_option("--scale-min-workers", f->scale.min_workers, "Scale rule: the fewest workers it asks for")
      ->check(CLI::Range(0, 4096))
      ->capture_default_str();
  cmd->add_option("--scale-max-workers", f->scale.max_workers, "Scale rule: the most workers it asks for")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  cmd->add_option("--scale-worker-capacity", f->scale.worker_capacity,
                  "Scale rule: a worker's KV tokens, assumed while none is registered (0: unknown)")
      ->check(CLI::Range(int64_t(0), kMaxContextTokens))
      ->capture_default_str();
  add_tls_flags(*cmd, f->tls);
  cmd->add_flag("--exit-with-parent", f->exit_with_parent,
                "Stop when the process that started this one ends (for launchers such as `starmesh demo`)");
  cmd->callback([f, &exit_code] { exit_code = run_router(*f); });
}

}  // namespace starmesh::cli
