#include "mesh_common.hpp"

#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <fstream>

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

Expected<std::unique_ptr<metrics::HttpEndpoint>> serve_metrics(const metrics::Registry& registry,
                                                               const std::string& listen,
                                                               const std::string& port_file) {
  if (listen.empty()) {
    if (!port_file.empty()) return make_error("--metrics-port-file needs --metrics-listen");
    return std::unique_ptr<metrics::HttpEndpoint>();
  }
  SM_ASSIGN(ep, metrics::HttpEndpoint::start(registry, listen));
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
}

namespace {
sigset_t stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}
}  // namespace

void block_stop_signals() {
  const sigset_t set = stop_signals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

int wait_for_signal(std::chrono::milliseconds timeout) {
  const sigset_t set = stop_signals();
  timespec ts{};
  ts.tv_sec = timeout.count() / 1000;
  ts.tv_nsec = (timeout.count() % 1000) * 1000000;
  const int sig = sigtimedwait(&set, nullptr, &ts);
  return sig > 0 ? sig : 0;
}

}  // namespace starmesh::cli
