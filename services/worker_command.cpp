// `starmesh worker`: a context worker. Loads the model on its device, opens the data plane,
// registers with the router, and serves until SIGINT/SIGTERM. When the router goes away the
// worker registers again as soon as a router answers at the same address (its running
// requests are freed: their drivers died with the router), unless --exit-with-router.
#include <fmt/core.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <caf/io/all.hpp>
#include <memory>
#include <string>

#include "commands.hpp"
#include "mesh_common.hpp"
#include "starmesh/backend/cpu_backend.hpp"
#ifdef STARMESH_HAVE_CUDA
#include "starmesh/backend/cuda_backend.hpp"
#endif
#include "starmesh/runtime/context_worker.hpp"
#include "starmesh/runtime/mesh_client.hpp"
#include "starmesh/runtime/mesh_config.hpp"

extern "C" void openblas_set_num_threads(int);  // OpenBLAS (the CPU backend's GEMMs)

namespace starmesh::cli {
namespace {

struct WorkerFlags {
  std::string router;
  std::string listen = "127.0.0.1:0";
  std::string model_dir = STARMESH_DEFAULT_MODEL_DIR;
  std::string device = "cpu";
  int64_t capacity = 65536;
  int threads = 0;
  std::string transport = "ucx-auto";
  std::string net_devices = "lo";
  std::string port_file;
  std::string metrics_listen, metrics_port_file;
  double register_timeout = 10;
  double drain_timeout = 30;
  int actor_threads = 2;
  bool exit_with_router = false;
};

int fail(const std::string& what) {
  fmt::print(stderr, "error: {}\n", what);
  return 1;
}

// Leaving gracefully: the router stops placing requests here, the running ones finish (at
// most `timeout` seconds; a second signal cuts it short), then the worker may stop.
void drain(caf::actor_system& sys, const RouterActor& router, const WorkerActor& worker, int64_t capacity,
           double timeout) {
  caf::scoped_actor self{sys};
  bool told = false;
  self->request(router, std::chrono::seconds(2), leave_atom::value, worker)
      .receive([&](bool known) { told = known; },
               [&](caf::error& e) { spdlog::warn("could not tell the router that this worker leaves: {}", describe(e)); });
  if (!told) return;  // nobody will place work here anyway
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(int64_t(timeout * 1000));
  for (;;) {
    int64_t held = -1;
    self->request(worker, std::chrono::seconds(2), status_atom::value)
        .receive([&](WorkerInfo& info) { held = capacity - info.kv_free; }, [](caf::error&) {});
    if (held == 0) {
      spdlog::info("drained: no request holds KV here any more");
      return;
    }
    if (std::chrono::steady_clock::now() >= until) {
      spdlog::warn("stopping after {} s of draining with {} KV tokens still held by running requests", timeout, held);
      return;
    }
    if (int sig = wait_for_signal(std::chrono::milliseconds(200))) {
      spdlog::warn("signal {} while draining: stopping now", sig);
      return;
    }
  }
}

int run_worker(const WorkerFlags& f) {
  block_stop_signals();
  log_to_stderr("worker");
  auto router_at = parse_host_port(f.router, "--router");
  if (!router_at) return fail(router_at.error().message);
  auto listen = parse_host_port(f.listen, "--listen");
  if (!listen) return fail(listen.error().message);
  if (f.capacity <= 0) return fail("--capacity must be > 0 KV tokens");
  UcxOptions ucx;
  if (f.transport == "ucx-tcp") ucx.transports = "tcp";
  else if (f.transport == "ucx-shm") ucx.transports = "shm";
  else if (f.transport == "ucx-auto") ucx.transports = "auto";
  else return fail("--transport must be ucx-tcp, ucx-shm or ucx-auto, got '" + f.transport + "'");
  ucx.net_devices = f.net_devices;

  // Owned here, used by the worker's actors and threads: they outlive the actor system.
  // --threads bounds the backend's own pool and OpenBLAS's (one CPU slot per worker).
  if (f.threads > 0) openblas_set_num_threads(f.threads);
  ThreadPool pool(f.threads);
  std::unique_ptr<backend_i> backend;
  if (f.device == "cpu") {
    backend = std::make_unique<CpuBackend>(pool);
  } else if (f.device == "cuda" || f.device == "cuda:0") {
#ifdef STARMESH_HAVE_CUDA
    // One GPU per worker, chosen with CUDA_VISIBLE_DEVICES: the backend makes its device
    // current on the thread that creates it, and the worker computes on threads of its own.
    auto cuda = CudaBackend::create(0);
    if (!cuda) return fail(cuda.error().message);
    backend = std::move(*cuda);
#else
    return fail("--device " + f.device + ": this build has no CUDA backend (configure with nvcc present)");
#endif
  } else if (f.device.rfind("cuda:", 0) == 0) {
    return fail("--device " + f.device + ": give each worker one GPU with CUDA_VISIBLE_DEVICES=N and --device cuda");
  } else {
    return fail("--device must be cpu or cuda, got '" + f.device + "'");
  }
  auto model = Transformer::load(*backend, f.model_dir);
  if (!model) return fail(model.error().message);
  auto plane = make_ucx_data_plane(ucx);
  if (!plane) return fail(plane.error().message);
  auto worker_metrics = std::make_shared<WorkerMetrics>(f.capacity);
  auto metrics_endpoint = serve_metrics(worker_metrics->registry, f.metrics_listen, f.metrics_port_file);
  if (!metrics_endpoint) return fail(metrics_endpoint.error().message);

  int exit_code = 0;
  {
    MeshConfig cfg({f.actor_threads});
    caf::actor_system sys{cfg};
    WorkerSetup setup;
    setup.model = &*model;
    setup.data_plane = plane->get();
    setup.endpoint = f.listen + " (pid " + std::to_string(getpid()) + ")";
    setup.device = f.device;
    setup.kv_capacity = f.capacity;
    setup.metrics = worker_metrics;
    WorkerActor worker = spawn_context_worker(sys, setup);
    auto stop_worker = [&] { caf::anon_send_exit(worker, caf::exit_reason::user_shutdown); };
    auto port = sys.middleman().publish(worker, listen->port, listen->host.c_str(), true);
    if (!port) {
      stop_worker();
      return fail("cannot listen on " + f.listen + ": " + describe(port.error()));
    }
    const std::string endpoint = listen->host + ":" + std::to_string(*port);
    if (!f.port_file.empty())
      if (Status s = write_port_file(f.port_file, *port); !s) {
        stop_worker();
        return fail(s.message());
      }
    const auto register_timeout = std::chrono::milliseconds(int64_t(f.register_timeout * 1000));
    auto router = connect_router(sys, router_at->host, router_at->port);
    if (!router) {
      stop_worker();
      return fail(router.error().message);
    }
    auto id = register_worker(sys, *router, worker, register_timeout, endpoint);
    if (!id) {
      stop_worker();
      return fail(id.error().message);
    }
    spdlog::info("worker {} at {}: {} on {}, {} KV tokens, {} compute threads, data plane {}", *id, endpoint,
                 model_signature(model->config()), f.device, f.capacity, pool.size(), (*plane)->name());
    fmt::print("starmesh worker {} at {} registered with the router at {}\n", *id, endpoint, f.router);
    std::fflush(stdout);

    // Watches the router: without it there is nothing to do but wait for the next one.
    auto router_gone = std::make_shared<std::atomic<bool>>(false);
    auto watch = [&](const RouterActor& r) {
      router_gone->store(false);
      return sys.spawn([router_gone, r](caf::event_based_actor* self) -> caf::behavior {
        self->monitor(r);
        self->set_down_handler([=](caf::down_msg&) {
          *router_gone = true;
          self->quit();
        });
        return {[](tick_atom, uint64_t) {}};
      });
    };
    caf::actor watcher = watch(*router);
    RouterActor current = *router;
    bool stopping = false;
    while (!stopping) {
      if (int sig = wait_for_signal(std::chrono::milliseconds(200))) {
        spdlog::info("signal {}: leaving the mesh", sig);
        if (!router_gone->load()) drain(sys, current, worker, f.capacity, f.drain_timeout);
        break;
      }
      if (!router_gone->load()) continue;
      if (f.exit_with_router) {
        fmt::print(stderr, "error: the router at {} went away: stopping\n", f.router);
        exit_code = 1;
        break;
      }
      spdlog::warn("the router at {} went away; registering again when one answers there", f.router);
      // Its book of kept contexts went with it: their KV is free again.
      caf::anon_send(worker, drop_atom::value, uint64_t(0));
      for (;;) {  // once a second, until a router takes us or a signal says stop
        if (int sig = wait_for_signal(std::chrono::milliseconds(1000))) {
          spdlog::info("signal {}: stopping", sig);
          stopping = true;
          break;
        }
        auto next = connect_router(sys, router_at->host, router_at->port);
        if (!next) continue;
        auto again = register_worker(sys, *next, worker, register_timeout, endpoint);
        if (!again) {
          spdlog::warn("registering again: {}", again.error().message);
          continue;
        }
        spdlog::info("registered again with the router at {} as worker {}", f.router, *again);
        caf::anon_send_exit(watcher, caf::exit_reason::user_shutdown);
        watcher = watch(*next);
        current = *next;
        break;
      }
    }
    caf::anon_send_exit(watcher, caf::exit_reason::user_shutdown);
    stop_worker();
  }  // the actor system waits for the worker (and joins its threads) here
  return exit_code;
}

}  // namespace

void add_worker_command(CLI::App& app, int& exit_code) {
  auto f = std::make_shared<WorkerFlags>();
  CLI::App* cmd = app.add_subcommand("worker", "Run a context worker: one device, one KV pool, registered with a router");
  cmd->fallthrough();  // --config (in starmesh_main.cpp) reads a [router] / [worker] section
  cmd->add_option("--router", f->router, "HOST:PORT of the router")->required();
  cmd->add_option("--listen", f->listen, "HOST:PORT where this worker's actor listens (port 0: any free one)")
      ->capture_default_str();
  cmd->add_option("--model", f->model_dir, "Model folder (HF Llama checkpoint)")->capture_default_str();
  cmd->add_option("--device", f->device, "cpu (one CPU slot) or cuda (one GPU: pick it with CUDA_VISIBLE_DEVICES)")->capture_default_str();
  cmd->add_option("--capacity", f->capacity, "KV pool size in tokens")->capture_default_str();
  cmd->add_option("--threads", f->threads, "Compute threads of the CPU backend (0: all cores)")->capture_default_str();
  cmd->add_option("--transport", f->transport, "Data plane: ucx-tcp, ucx-shm (one machine) or ucx-auto")
      ->capture_default_str();
  cmd->add_option("--net-devices", f->net_devices, "Network devices UCX may use (lo: loopback only; all)")
      ->capture_default_str();
  cmd->add_option("--port-file", f->port_file, "Write the port listened on to this file");
  cmd->add_option("--metrics-listen", f->metrics_listen, "HOST:PORT of the Prometheus /metrics endpoint; empty: off");
  cmd->add_option("--metrics-port-file", f->metrics_port_file, "Write the metrics port to this file");
  cmd->add_option("--drain-timeout", f->drain_timeout,
                  "On SIGTERM/SIGINT: seconds to let running requests finish (new ones go elsewhere); a second signal stops at once")
      ->capture_default_str();
  cmd->add_option("--register-timeout", f->register_timeout, "Seconds to wait for the router")->capture_default_str();
  cmd->add_option("--actor-threads", f->actor_threads, "Threads of the actor scheduler")->capture_default_str();
  cmd->add_flag("--exit-with-router", f->exit_with_router,
                "Stop when the router goes away (default: register again with the next router there)");
  cmd->callback([f, &exit_code] { exit_code = run_worker(*f); });
}

}  // namespace starmesh::cli
