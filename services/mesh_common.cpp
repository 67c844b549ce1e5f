#include "mesh_common.hpp"

#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "cli_io.hpp"

namespace starmesh::cli {

Expected<HostPort> parse_host_port(const std::string& text, const char* flag) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0)
    return make_error(flag, " '", text, "' is not HOST:PORT (e.g. 127.0.0.1:7400)");
  HostPort hp;
  hp.host = text.substr(0, colon);
  try {
    size_t used = 0;
    const int p = std::stoi(text.substr(colon + 1), &used);
    if (used != text.size() - colon - 1 || p < 0 || p > 65535) throw std::out_of_range(text);
    hp.port = uint16_t(p);
  } catch (const std::exception&) {
    return make_error(flag, " '", text, "': the port must be a number from 0 to 65535");
  }
  return hp;
}

Expected<UcxOptions> ucx_options(const std::string& transport, const std::string& net_devices) {
  UcxOptions ucx;
  if (transport == "ucx-tcp")
    ucx.transports = "tcp";
  else if (transport == "ucx-shm")
    ucx.transports = "shm";
  else if (transport == "ucx-auto")
    ucx.transports = "auto";
  else
    return make_error(ErrorCode::invalid_argument, "--transport must be ucx-tcp, ucx-shm or ucx-auto, got '", transport,
                      "'");
  ucx.net_devices = net_devices;
  return ucx;
}

std::function<Status()> live_while(std::shared_ptr<const std::atomic<bool>> running, std::string what) {
  return [running, what] {
    return running->load() ? Status{} : make_error(ErrorCode::unavailable, "the ", what, " actor is not running");
  };
}

std::string served_model_name(const std::string& model_dir) {
  std::filesystem::path p(model_dir);
  if (p.filename().empty()) p = p.parent_path();  // "models/x/"
  return p.filename().string();
}

Expected<std::unique_ptr<metrics::HttpEndpoint>> serve_metrics(const metrics::Registry& registry,
                                                               const std::string& listen, const std::string& port_file,
                                                               metrics::HealthChecks health) {
  if (listen.empty()) {
    if (!port_file.empty()) return make_error("--metrics-port-file needs --metrics-listen");
    return std::unique_ptr<metrics::HttpEndpoint>();
  }
  SM_ASSIGN(ep, metrics::HttpEndpoint::start(registry, listen, std::move(health)));
  if (!port_file.empty()) SM_TRY(write_port_file(port_file, uint16_t(ep->port())));
  spdlog::info("metrics at http://{}:{}/metrics", listen.substr(0, listen.rfind(':')), ep->port());
  return ep;
}

Status write_port_file(const std::string& path, uint16_t port) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    out << port << "\n";
    if (!out) return make_error("cannot write the port file '", tmp, "'");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) return make_error("cannot write the port file '", path, "'");
  return {};
}

void log_to_stderr(const std::string& name) {
  auto logger = spdlog::stderr_color_mt(name);
  logger->set_pattern("[%H:%M:%S.%e] [%n] [%l] %v");
  spdlog::set_default_logger(logger);
  apply_log_settings();  // --log-level, --log-format
}

namespace {
sigset_t stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

// A stop signal caught by a thread that did not block it: threads that libraries start before
// main (OpenBLAS's pool) keep the default mask, and the kernel may deliver there. A signal
// handler can only reach the waiting thread through a global, hence this one.
std::atomic<int> caught_signal{0};
extern "C" void catch_stop_signal(int sig) { caught_signal.store(sig); }
}  // namespace

void add_tls_flags(CLI::App& cmd, MeshTls& tls) {
  cmd.add_option("--tls-ca", tls.ca_file,
                 "Mutual TLS: the mesh's CA certificate (PEM); peers without one it signed are refused")
      ->check(CLI::ExistingFile);
  cmd.add_option("--tls-cert", tls.cert_file, "Mutual TLS: this process's certificate (PEM), signed by --tls-ca")
      ->check(CLI::ExistingFile);
  cmd.add_option("--tls-key", tls.key_file, "Mutual TLS: the certificate's private key (PEM)")
      ->check(CLI::ExistingFile);
}

int64_t raise_open_file_limit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return -1;
  if (lim.rlim_cur < lim.rlim_max) {
    rlimit raised = lim;
    raised.rlim_cur = lim.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) lim = raised;
  }
  return lim.rlim_cur == RLIM_INFINITY ? INT64_MAX : int64_t(lim.rlim_cur);
}

void exit_with_parent() {
  const pid_t parent = getppid();
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() != parent) raise(SIGTERM);  // the parent ended before the call
}

void block_stop_signals() {
  struct sigaction sa {};
  sa.sa_handler = catch_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  const sigset_t set = stop_signals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

int wait_for_signal(std::chrono::milliseconds timeout) {
  if (int caught = caught_signal.exchange(0)) return caught;
  const sigset_t set = stop_signals();
  // Short slices, so a signal another thread caught is seen within 50 ms.
  const auto until = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
    const auto slice = std::clamp(left, std::chrono::milliseconds(0), std::chrono::milliseconds(50));
    timespec ts{};
    ts.tv_nsec = long(slice.count()) * 1000000;
    const int sig = sigtimedwait(&set, nullptr, &ts);
    if (sig > 0) return sig;
    if (int caught = caught_signal.exchange(0)) return caught;
    if (slice.count() == 0 || left <= slice) return 0;
  }
}

}  // namespace starmesh::cli
