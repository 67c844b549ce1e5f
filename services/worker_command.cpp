// `starmesh worker`: a context worker. Loads the model on its device, opens the data plane,
// and hands its life in the mesh to WorkerMembership (register, re-register when the router
// comes back, leave gracefully on SIGINT/SIGTERM).
#include <fmt/core.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <caf/io/all.hpp>
#include <chrono>
#include <memory>
#include <string>

#include "commands.hpp"
#include "mesh_common.hpp"
#include "starmesh/attention/block_plan.hpp"
#include "starmesh/backend/device.hpp"
#ifdef STARMESH_HAVE_CUDA
#include "starmesh/backend/cuda_backend.hpp"
#include "starmesh/model/warm_up.hpp"
#endif
#include "starmesh/model/loaded_model.hpp"
#include "starmesh/runtime/context_worker.hpp"
#include "starmesh/runtime/decode_batcher.hpp"
#include "starmesh/runtime/mesh_config.hpp"
#include "starmesh/runtime/worker_membership.hpp"
#include "starmesh/service/request.hpp"

namespace starmesh::cli {
namespace {

struct WorkerFlags {
  std::string router;
  std::string listen = "127.0.0.1:0";
  std::string model_dir = STARMESH_DEFAULT_MODEL_DIR;
  std::string device = "cpu";
  int64_t capacity = 65536;
  int64_t kv_page_tokens = 16;
  bool cuda_kv_pages = true;
  bool cuda_batch_ops = true;
  bool cuda_staging = true;
  int max_batch = 32;
  int64_t prefill_chunk = 4096;
  int64_t batch_prefill = 256;
  int threads = 0;
  std::string transport = "ucx-auto";
  std::string net_devices = "lo";
  std::string port_file;
  std::string metrics_listen, metrics_port_file;
  double register_timeout = 10;
  double drain_timeout = 30;
  int actor_threads = 2;
  bool exit_with_parent = false;
  MeshTls tls;  // --tls-ca, --tls-cert, --tls-key
  bool exit_with_router = false;
};

int fail(const std::string& what) {
  fmt::print(stderr, "error: {}\n", what);
  return 1;
}

int run_worker(const WorkerFlags& f) {
  if (f.exit_with_parent) exit_with_parent();
  if (Status tls = f.tls.check(); !tls) return fail(tls.message());
  block_stop_signals();
  log_to_stderr("worker");
  raise_open_file_limit();  // UCX endpoints and the router connection take descriptors
  auto router_at = parse_host_port(f.router, "--router");
  if (!router_at) return fail(router_at.error().message);
  auto listen = parse_host_port(f.listen, "--listen");
  if (!listen) return fail(listen.error().message);
  if (Status s = check_listen_host(listen->host, f.tls.enabled()); !s) return fail(s.message());  // before loading
  if (f.capacity <= 0) return fail("--capacity must be > 0 KV tokens");
  // nccl: GPU tensors through NCCL, the rest (and NCCL's bootstrap) through UCX, either way.
  const bool nccl = f.transport == "nccl";
  auto ucx = ucx_options(nccl ? "ucx-auto" : f.transport, f.net_devices);
  if (!ucx)
    return fail("--transport must be ucx-tcp, ucx-shm or ucx-auto (or nccl: GPU workers), got '" + f.transport + "'");
  auto device = parse_device(f.device);
  if (!device) return fail("--device: " + device.error().message);
  if (nccl && device->kind != DeviceSpec::Kind::cuda) return fail("--transport nccl needs --device cuda");
  // One GPU per worker, chosen with CUDA_VISIBLE_DEVICES: the backend makes its device current
  // on the thread that creates it, and the worker computes on threads of its own.
  if (device->kind == DeviceSpec::Kind::cuda && device->index != 0)
    return fail("--device " + f.device + ": give each worker one GPU with CUDA_VISIBLE_DEVICES=N and --device cuda");

  // Owned here, used by the worker's actors and threads: they outlive the actor system.
  // --threads bounds the backend's own pool and OpenBLAS's (one CPU slot per worker).
  // A real-size checkpoint takes a while: the log says how far it is, a quarter at a time.
  auto loaded = load_model(f.model_dir, *device, f.threads, [](int64_t done, int64_t total) {
    if (done == total || done % std::max<int64_t>(1, total / 4) == 0)
      spdlog::info("loading the model: {} of {} layers", done, total);
  });
  if (!loaded) return fail(loaded.error().message);
  Transformer& model = *(*loaded)->model;
#ifdef STARMESH_HAVE_CUDA
  if (auto* gpu = dynamic_cast<CudaBackend*>((*loaded)->backend.get())) {
    gpu->set_page_arena(f.cuda_kv_pages);
    gpu->set_batch_ops(f.cuda_batch_ops);
    gpu->set_staging(f.cuda_staging);
    // The timed GEMM plans now, before the worker registers: not in a request's first step.
    const auto t0 = std::chrono::steady_clock::now();
    if (Status warm = warm_up_gemms(model, CudaBackend::tuned_gemm_rows()); !warm)
      return fail("warming up the GEMMs: " + warm.message());
    spdlog::info("GEMM plans for 1 to {} rows made in {} ms", CudaBackend::tuned_gemm_rows(),
                 std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count());
  }
#endif
  // KV in pages of one arena: caches of every length share the device, a freed one's pages
  // serve the next at once. A freed request's pages come back when its thread lets go of
  // them (a chunk's time at most); a new cache waits that long for them.
  // A capacity the device cannot hold would be booked by the router and fail some request's
  // phase 1 out of memory: refuse it here, with the most that fits.
  if (Status fits = check_kv_fits(model, f.capacity); !fits) return fail(fits.message());
  auto pages = page_kv(model, f.capacity, f.kv_page_tokens, std::chrono::seconds(30));
  if (!pages) return fail(pages.error().message);
  Expected<std::unique_ptr<data_plane_i>> plane =
      make_error("--transport nccl needs the CUDA backend, and this worker's is not (a build without CUDA?)");
  if (nccl) {
#ifdef STARMESH_HAVE_CUDA
    if (auto* gpu = dynamic_cast<CudaBackend*>((*loaded)->backend.get()))
      plane = make_nccl_data_plane(*ucx, gpu->device().index, gpu->stream());
#endif
  } else {
    plane = make_ucx_data_plane(*ucx);
  }
  if (!plane) return fail(plane.error().message);
  auto worker_metrics = std::make_shared<WorkerMetrics>(pages->capacity_tokens);
  publish_build_info(worker_metrics->registry, STARMESH_VERSION, served_model_name(f.model_dir));
  // /healthz: the worker actor runs; /readyz: and it is registered with a router.
  WorkerMembershipOptions mo;  // its flags: the worker actor runs, it is registered
  metrics::HealthChecks health;
  health.live = live_while(mo.worker_running, "worker");
  health.ready = [live = health.live, registered = mo.registered]() -> Status {
    SM_TRY(live());
    if (!registered->load()) return make_error(ErrorCode::unavailable, "not registered with a router");
    return {};
  };
  auto metrics_endpoint =
      serve_metrics(worker_metrics->registry, f.metrics_listen, f.metrics_port_file, std::move(health));
  if (!metrics_endpoint) return fail(metrics_endpoint.error().message);

  int exit_code = 0;
  {
    MeshConfig cfg({f.actor_threads, true, false, f.tls});
    caf::actor_system sys{cfg};
    WorkerSetup setup;
    setup.model = &model;
    setup.data_plane = plane->get();
    setup.endpoint = f.listen + " (pid " + std::to_string(getpid()) + ")";
    setup.device = to_string(resolve_device(*device));
    setup.kv_capacity = pages->capacity_tokens;  // --capacity in whole pages
    setup.kv_page_tokens = pages->page_tokens;
    setup.max_batch = f.max_batch;
    setup.prefill_chunk = f.prefill_chunk;
    setup.batch_prefill_tokens = f.batch_prefill;
    setup.metrics = worker_metrics;
    WorkerActor worker = spawn_context_worker(sys, setup);
    StopOnExit<WorkerActor> stop_worker{worker};  // every return below, errors included
    auto port = publish_actor(worker, listen->host, listen->port);
    if (!port) return fail(port.error().message);
    const std::string endpoint = listen->host + ":" + std::to_string(*port);
    if (!f.port_file.empty())
      if (Status s = write_port_file(f.port_file, *port); !s) return fail(s.message());
    mo.router_host = router_at->host;
    mo.router_port = router_at->port;
    mo.endpoint = endpoint;
    mo.register_timeout = seconds_flag(f.register_timeout);
    mo.drain_timeout = seconds_flag(f.drain_timeout);
    mo.exit_with_router = f.exit_with_router;
    WorkerMembership membership(sys, worker, mo);
    auto id = membership.join();
    if (!id) return fail(id.error().message);
    spdlog::info("worker {} at {}: {} on {}, {} KV tokens in pages of {}{}, {} compute threads, data plane {}", *id,
                 endpoint, model_signature(model.config()), setup.device, setup.kv_capacity, pages->page_tokens,
                 model.kv_paging().arena ? "" : " (booked; allocated per cache)", (*loaded)->pool.size(),
                 (*plane)->name());
    fmt::print("starmesh worker {} at {} registered with the router at {}\n", *id, endpoint, f.router);
    std::fflush(stdout);
    exit_code = membership.run(wait_for_signal);
  }  // the actor system waits for the worker (and joins its threads) here
  return exit_code;
}

}  // namespace

void add_worker_command(CLI::App& app, int& exit_code) {
  auto f = std::make_shared<WorkerFlags>();
  CLI::App* cmd =
      app.add_subcommand("worker", "Run a context worker: one device, one KV pool, registered with a router");
  cmd->fallthrough();  // --config (in starmesh_main.cpp) reads a [router] / [worker] section
  cmd->add_option("--router", f->router, "HOST:PORT of the router")->required();
  cmd->add_option("--listen", f->listen, "HOST:PORT where this worker's actor listens (port 0: any free one)")
      ->capture_default_str();
  cmd->add_option("--model", f->model_dir, "Model folder (HF Llama checkpoint)")->capture_default_str();
  cmd->add_option("--device", f->device,
                  "cpu (one CPU slot), cuda (one GPU: pick it with CUDA_VISIBLE_DEVICES) or auto")
      ->capture_default_str();
  cmd->add_option("--capacity", f->capacity, "KV pool size in tokens")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 34))
      ->capture_default_str();
  cmd->add_option("--kv-page-tokens", f->kv_page_tokens,
                  "Smallest KV page in tokens; the device's page size and the mapping limit may raise it "
                  "(the log says what was taken)")
      ->check(CLI::Range(int64_t(1), kMaxPageTokens))
      ->capture_default_str();
  cmd->add_flag("--cuda-kv-pages,!--no-cuda-kv-pages", f->cuda_kv_pages,
                "On a GPU, KV in pages of one device arena (CUDA virtual memory) shared by every cache; on by "
                "default (--no-cuda-kv-pages: an allocation per cache, to compare)");
  cmd->add_flag("--cuda-batch-ops,!--no-cuda-batch-ops", f->cuda_batch_ops,
                "On a GPU, a decode batch's KV writes and attention as one launch each for all its requests; on "
                "by default (--no-cuda-batch-ops: one call a request, to compare)");
  cmd->add_flag("--cuda-staging,!--no-cuda-staging", f->cuda_staging,
                "Small uploads queued from pinned buffers without waiting for the GPU, by default "
                "(--no-cuda-staging: synchronous copies, to compare)");
  cmd->add_option("--max-batch", f->max_batch,
                  "Most requests whose decode steps this worker runs as one batch (as their query host)")
      ->check(CLI::Range(1, DecodeBatcher::kMaxBatch))
      ->capture_default_str();
  cmd->add_option("--prefill-chunk", f->prefill_chunk,
                  "Phase-1 tokens computed per hold of the device, so that other requests' decode steps "
                  "go on between them (0: whole blocks)")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 24))
      ->capture_default_str();
  cmd->add_option("--batch-prefill", f->batch_prefill,
                  "A query of at most this many tokens prefills inside the decode batch, beside the other "
                  "requests' steps, and the most such tokens one batch takes (0: every query prefills alone)")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 16))
      ->capture_default_str();
  cmd->add_option("--threads", f->threads, "Compute threads of the CPU backend (0: all cores)")
      ->check(CLI::Range(0, 1024))
      ->capture_default_str();
  cmd->add_option("--transport", f->transport,
                  "Data plane: ucx-tcp, ucx-shm (one machine; a worker killed mid-message can stall the others: "
                  "docs/TRAPS.md), ucx-auto, or nccl (GPU workers, one GPU each; NCCL's links must be isolated: "
                  "docs/SECURITY.md)")
      ->capture_default_str();
  cmd->add_option("--net-devices", f->net_devices, "Network devices UCX may use (lo: loopback only; all)")
      ->capture_default_str();
  cmd->add_option("--port-file", f->port_file, "Write the port listened on to this file");
  cmd->add_option("--metrics-listen", f->metrics_listen, "HOST:PORT of the Prometheus /metrics endpoint; empty: off");
  cmd->add_option("--metrics-port-file", f->metrics_port_file, "Write the metrics port to this file");
  cmd->add_option("--drain-timeout", f->drain_timeout,
                  "On SIGTERM/SIGINT: seconds to let running requests finish (new ones go "
                  "elsewhere)->check(CLI::Range(0.0, 86400.0)); a second signal "
                  "stops at once")
      ->capture_default_str();
  cmd->add_option("--register-timeout", f->register_timeout, "Seconds to wait for the router")
      ->check(CLI::Range(0.001, 3600.0))
      ->capture_default_str();
  cmd->add_option("--actor-threads", f->actor_threads, "Threads of the actor scheduler")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  cmd->add_flag("--exit-with-router", f->exit_with_router,
                "Stop when the router goes away (default: register again with the next router there)");
  add_tls_flags(*cmd, f->tls);
  cmd->add_flag("--exit-with-parent", f->exit_with_parent,
                "Stop when the process that started this one ends (for launchers such as `starmesh demo`)");
  cmd->callback([f, &exit_code] { exit_code = run_worker(*f); });
}

}  // namespace starmesh::cli
