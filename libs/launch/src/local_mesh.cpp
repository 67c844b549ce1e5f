#include "starmesh/launch/local_mesh.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>

extern char** environ;

namespace starmesh {
namespace {

using Clock = std::chrono::steady_clock;

Expected<pid_t> spawn_child(const std::vector<std::string>& args, const std::string& log) {
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (!log.empty()) {
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
  }
  // A clean signal mask: the child must see the SIGTERM that stops it.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, args[0].c_str(), &fa, &attr, argv.data(), environ);
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0)  // the log's open happens in the child's setup: its failure reads the same
    return make_error("cannot start ", args[0], log.empty() ? "" : " (its log to " + log + ")", ": ",
                      std::strerror(rc));
  return pid;
}

// Whether `pid` has exited (reaps it); fills `how`.
bool exited(pid_t pid, std::string& how) {
  int status = 0;
  if (waitpid(pid, &status, WNOHANG) != pid) return false;
  how = WIFEXITED(status)     ? "exited with code " + std::to_string(WEXITSTATUS(status))
        : WIFSIGNALED(status) ? "was killed by signal " + std::to_string(WTERMSIG(status))
                              : "ended";
  return true;
}

std::vector<std::string> tls_flags(const MeshTls& tls) {
  if (!tls.enabled()) return {};
  return {"--tls-ca", tls.ca_file, "--tls-cert", tls.cert_file, "--tls-key", tls.key_file};
}

// The port in `path` (a child's --port-file), if it is written yet.
std::optional<uint16_t> read_port_file(const std::string& path) {
  std::ifstream in(path);
  int port = 0;
  if (in >> port && port > 0 && port < 65536) return uint16_t(port);
  return std::nullopt;
}

Expected<uint16_t> wait_port_file(const std::string& path, pid_t pid, const std::string& who, Clock::time_point until) {
  for (;;) {
    if (auto port = read_port_file(path)) return *port;
    std::string how;
    if (exited(pid, how)) return make_error("the ", who, " ", how, " before it was listening");
    if (Clock::now() >= until) return make_error("the ", who, " was not listening in time");
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace

Expected<std::unique_ptr<LocalMesh>> LocalMesh::start(caf::actor_system& sys, const LocalMeshOptions& o) {
  std::unique_ptr<LocalMesh> m(new LocalMesh());
  m->options_ = o;
  char tmpl[] = "/tmp/starmesh-mesh-XXXXXX";
  if (!mkdtemp(tmpl)) return make_error("cannot make a temporary folder: ", std::strerror(errno));
  m->dir_ = tmpl;
  const auto until = Clock::now() + o.start_timeout;
  SM_TRY(m->spawn_router(0, until));
  m->workers_.assign(size_t(o.workers), -1);
  m->ending_.assign(size_t(o.workers), false);
  for (int i = 0; i < o.workers; ++i) SM_TRY(m->spawn_worker(size_t(i)));
  for (int i = 0; o.metrics && i < o.workers; ++i) {
    const std::string name = "worker-" + std::to_string(i + 1);
    SM_ASSIGN(mport, wait_port_file(m->dir_ + "/" + name + ".metrics", m->workers_[size_t(i)], name, until));
    m->metrics_ports_.push_back(mport);
  }
  SM_TRY(m->connect_and_wait(sys, until));
  return m;
}

Status LocalMesh::spawn_worker(size_t i) {
  const LocalMeshOptions& o = options_;
  const int64_t cap = i < o.capacities.size() ? o.capacities[i] : o.capacity;
  std::vector<std::string> w = {o.program,           "worker",
                                "--router",          "127.0.0.1:" + std::to_string(router_port_),
                                "--listen",          "127.0.0.1:0",
                                "--model",           o.model_dir,
                                "--transport",       o.transport,
                                "--device",          o.device,
                                "--capacity",        std::to_string(cap),
                                "--threads",         std::to_string(o.threads_per_worker),
                                "--exit-with-parent"};
  w.insert(w.end(), o.worker_args.begin(), o.worker_args.end());
  const auto tf = tls_flags(o.tls);
  w.insert(w.end(), tf.begin(), tf.end());
  const std::string name = "worker-" + std::to_string(i + 1);
  const auto mf = metrics_flags(name);
  w.insert(w.end(), mf.begin(), mf.end());
  // Its port names it among the router's members (connect_and_wait).
  std::filesystem::remove(worker_port_file(i));
  w.insert(w.end(), {"--port-file", worker_port_file(i)});
  SM_ASSIGN(wpid, spawn_child(w, o.log_dir.empty() ? std::string() : o.log_dir + "/" + name + ".log"));
  workers_[i] = wpid;
  ending_[i] = false;
  return {};
}

Status LocalMesh::restart_worker(caf::actor_system& sys, size_t i) {
  if (i >= workers_.size()) return make_error("no worker ", i);
  if (workers_[i] > 0) {
    ::kill(workers_[i], SIGKILL);
    waitpid(workers_[i], nullptr, 0);
  }
  SM_TRY(spawn_worker(i));
  const auto until = Clock::now() + options_.start_timeout;
  if (options_.metrics) {
    const std::string name = "worker-" + std::to_string(i + 1);
    SM_ASSIGN(mport, wait_port_file(dir_ + "/" + name + ".metrics", workers_[i], name, until));
    metrics_ports_[i + 1] = mport;
  }
  return connect_and_wait(sys, until);
}

Expected<size_t> LocalMesh::add_worker(caf::actor_system& sys) {
  const size_t i = workers_.size();
  workers_.push_back(-1);
  ending_.push_back(false);
  if (options_.metrics) metrics_ports_.push_back(0);
  SM_TRY(restart_worker(sys, i));
  return i;
}

Status LocalMesh::spawn_router(uint16_t port, Clock::time_point until) {
  const LocalMeshOptions& o = options_;
  const std::string port_file = dir_ + "/router.port";
  std::filesystem::remove(port_file);
  std::vector<std::string> router = {
      o.program, "router",    "--listen",     "127.0.0.1:" + std::to_string(port), "--port-file",       port_file,
      "--model", o.model_dir, "--block-size", std::to_string(o.block_size),        "--exit-with-parent"};
  router.insert(router.end(), o.router_args.begin(), o.router_args.end());
  const auto tf = tls_flags(o.tls);
  router.insert(router.end(), tf.begin(), tf.end());
  const auto mf = metrics_flags("router");
  router.insert(router.end(), mf.begin(), mf.end());
  const std::string log = o.log_dir.empty() ? std::string() : o.log_dir + "/router.log";
  SM_ASSIGN(rpid, spawn_child(router, log));
  router_ = rpid;
  SM_ASSIGN(bound, wait_port_file(port_file, rpid, "router", until));
  router_port_ = bound;
  if (o.metrics) {
    SM_ASSIGN(mport, wait_port_file(dir_ + "/router.metrics", rpid, "router", until));
    if (metrics_ports_.empty())
      metrics_ports_.push_back(mport);
    else
      metrics_ports_[0] = mport;  // a restarted router
  }
  return {};
}

std::vector<std::string> LocalMesh::metrics_flags(const std::string& name) const {
  if (!options_.metrics) return {};
  const std::string file = dir_ + "/" + name + ".metrics";
  std::filesystem::remove(file);
  return {"--metrics-listen", "127.0.0.1:0", "--metrics-port-file", file};
}

Status LocalMesh::connect_and_wait(caf::actor_system& sys, Clock::time_point until) {
  if (!client_) {  // kept across added and restarted workers: requests may be running on it
    SM_ASSIGN(router_actor, connect_router(sys, "127.0.0.1", router_port_));
    client_ = std::make_unique<MeshClient>(sys, router_actor);
  }
  for (;;) {
    // Every live worker not told to end must be a member, named by its listening port.
    auto members = client_->members();
    int live = 0, registered = 0;
    for (size_t i = 0; i < workers_.size(); ++i) {
      std::string how;
      if (workers_[i] > 0 && exited(workers_[i], how)) {
        workers_[i] = -1;
        if (ending_[i]) continue;  // told to end: its exit is expected
        return make_error("worker ", i + 1, " ", how, " before it registered",
                          log_tail().empty() ? "" : ":\n" + log_tail());
      }
      if (workers_[i] <= 0 || ending_[i]) continue;
      ++live;
      const auto port = read_port_file(worker_port_file(i));
      if (members && port && std::any_of(members->begin(), members->end(), [&](const WorkerView& v) {
            return v.info.endpoint == "127.0.0.1:" + std::to_string(*port);
          }))
        ++registered;
    }
    if (registered == live) return {};
    if (Clock::now() >= until)
      return make_error("only ", registered, " of ", live, " workers registered within ",
                        format_seconds(options_.start_timeout));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

Status LocalMesh::restart_router(caf::actor_system& sys) {
  if (router_ > 0) {
    ::kill(router_, SIGKILL);
    waitpid(router_, nullptr, 0);
    router_ = -1;
  }
  client_.reset();
  const auto until = Clock::now() + options_.start_timeout;
  SM_TRY(spawn_router(router_port_, until));
  return connect_and_wait(sys, until);
}

Status LocalMesh::signal_worker(size_t i, int sig) {
  if (i >= workers_.size() || workers_[i] <= 0) return make_error("no worker ", i);
  if (::kill(workers_[i], sig) != 0) return make_error("kill(", workers_[i], "): ", std::strerror(errno));
  if (sig == SIGTERM || sig == SIGINT || sig == SIGKILL) ending_[i] = true;
  return {};
}

std::string LocalMesh::log_tail(size_t lines) const {
  if (options_.log_dir.empty()) return {};
  std::string out;
  for (const auto& entry : std::filesystem::directory_iterator(options_.log_dir)) {
    std::ifstream in(entry.path());
    std::vector<std::string> all;
    for (std::string line; std::getline(in, line);) all.push_back(line);
    if (all.empty()) continue;
    out += "--- " + entry.path().filename().string() + "\n";
    for (size_t k = all.size() > lines ? all.size() - lines : 0; k < all.size(); ++k) out += all[k] + "\n";
  }
  return out;
}

void LocalMesh::stop(std::chrono::milliseconds grace) {
  std::vector<pid_t> all = workers_;
  all.push_back(router_);
  for (pid_t p : all)
    if (p > 0) {
      ::kill(p, SIGCONT);  // a stopped child cannot handle SIGTERM
      ::kill(p, SIGTERM);
    }
  const auto until = Clock::now() + grace;
  for (pid_t& p : all) {
    if (p <= 0) continue;
    std::string how;
    while (!exited(p, how)) {
      if (Clock::now() >= until) {
        ::kill(p, SIGKILL);
        waitpid(p, nullptr, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    p = -1;
  }
  for (pid_t& p : workers_) p = -1;
  router_ = -1;
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
    dir_.clear();
  }
}

LocalMesh::~LocalMesh() { stop(); }

}  // namespace starmesh
