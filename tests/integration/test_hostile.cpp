// Hostile input against real processes on 127.0.0.1 (the hardening issue's attacks, bounded),
// each followed by a normal request that must still get the reference tokens.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <thread>
#include <vector>

#include "integration/process_mesh.hpp"
#include "integration/run_cli.hpp"
#include "starmesh/api/api_client.hpp"
#include "support/http_client.hpp"

using namespace starmesh;
using test::ProcessMesh;
using test::run_cli;

namespace {

// Runs the CLI with `args`, which must make it exit with an error; every one of `needles`
// must be in what it printed, which is returned.
std::string refused(const std::string& args, const std::vector<std::string>& needles = {}) {
  auto ran = run_cli(args + " 2>&1");
  INFO(ran.out);
  CHECK(ran.exited());
  CHECK(ran.code() != 0);
  for (const std::string& n : needles) CHECK_MESSAGE(ran.out.find(n) != std::string::npos, "missing: ", n);
  return ran.out;
}

}  // namespace

TEST_CASE_FIXTURE(ProcessMesh, "numbers out of bounds are refused naming the bound, and the mesh serves on") {
  start("ucx-shm", 2);
  const auto ctx = random_ids(600, 41), query = random_ids(4, 42);
  struct Attack {
    const char* what;
    void (*set)(GenerateRequest&);
    const char* bound;
  };
  const Attack attacks[] = {
      {"block size 2^63-1", [](GenerateRequest& r) { r.block_size = std::numeric_limits<int64_t>::max(); },
       "block_size must be in [0, 16777216]"},
      {"negative block size", [](GenerateRequest& r) { r.block_size = -5; }, "block_size must be in [0, 16777216]"},
      {"negative anchor", [](GenerateRequest& r) { r.anchor_size = -7; }, "anchor_size must be in [0, 16777216]"},
      {"2^31-1 new tokens", [](GenerateRequest& r) { r.max_new_tokens = std::numeric_limits<int>::max(); },
       "max_new_tokens must be in [0, 1048576]"},
      {"a billion hosts", [](GenerateRequest& r) { r.max_hosts = 1000000000; }, "max_hosts must be in [0, 4096]"},
  };
  for (const Attack& a : attacks) {
    CAPTURE(a.what);
    GenerateOrder o;
    o.request.context_ids = ctx;
    o.request.query_ids = query;
    o.request.block_size = 256;
    o.request.max_new_tokens = 4;
    a.set(o.request);
    auto got = mesh->client().run(o);
    REQUIRE_FALSE(got);
    CHECK(got.code() == ErrorCode::invalid_argument);
    CHECK(got.error().message.find(a.bound) != std::string::npos);
  }
  const auto members = mesh->client().members().value();  // a variable: value() of a temporary dangles
  for (const auto& w : members) CHECK(w.reserved == 0);
  auto after = run(ctx, query, 256, 8);
  REQUIRE_MESSAGE(after, (after ? "" : after.error().message));
  CHECK(after->ids == star(ctx, query, 256, 2, 8).ids);
}

TEST_CASE("the CLI refuses out-of-bound flags with an error, not a crash") {
  refused("generate --mode star --block-size 9223372036854775807 --context abc --query d", {"--block-size"});
  refused("generate --mode star --hosts -3 --context abc --query d");
  refused("generate --mode star --anchor-size -9 --context abc --query d");
}

TEST_CASE("a worker refuses an unknown data plane, and NCCL without a GPU, before loading its model") {
  refused("worker --router 127.0.0.1:1 --transport carrier-pigeon", {"ucx-tcp, ucx-shm or ucx-auto", "or nccl"});
  const std::string nccl =
      refused("worker --router 127.0.0.1:1 --transport nccl --device cpu", {"--transport nccl needs --device cuda"});
  CHECK(nccl.find("loading the model") == std::string::npos);
}

TEST_CASE("without TLS the router and workers listen only on loopback addresses") {
  // The plain control plane authenticates no one (and CAF sizes a message from its header):
  // it must not be reachable from another machine.
  auto router = run_cli("router --listen 0.0.0.0:0 2>&1");
  INFO(router.out);
  CHECK(router.exited());
  CHECK(router.code() != 0);
  CHECK(router.code() != 124);
  CHECK(router.out.find("without TLS") != std::string::npos);
  auto worker = run_cli("worker --router 127.0.0.1:1 --listen 0.0.0.0:0 --exit-with-router 2>&1");
  INFO(worker.out);
  CHECK(worker.exited());
  CHECK(worker.code() != 0);
  CHECK(worker.code() != 124);
  CHECK(worker.out.find("without TLS") != std::string::npos);
}

TEST_CASE("a router whose API cannot start exits non-zero at once") {
  // A port that is taken: a listening socket of this test.
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(listen(fd, 1) == 0);
  socklen_t len = sizeof addr;
  REQUIRE(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  const std::string busy = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  auto taken = run_cli("router --listen 127.0.0.1:0 --api-listen " + busy + " 2>&1");
  close(fd);
  INFO(taken.out);
  CHECK(taken.exited());
  CHECK(taken.code() != 0);
  CHECK(taken.code() != 124);  // not killed by the time limit: it exited by itself
  CHECK(taken.out.find(busy) != std::string::npos);

  auto no_tokens =
      run_cli("router --listen 127.0.0.1:0 --api-listen 127.0.0.1:0 --api-tokens-file /nonexistent/tokens 2>&1");
  INFO(no_tokens.out);
  CHECK(no_tokens.exited());
  CHECK(no_tokens.code() != 0);
  CHECK(no_tokens.code() != 124);
  CHECK(no_tokens.out.find("/nonexistent/tokens") != std::string::npos);
}

TEST_CASE_FIXTURE(ProcessMesh, "an API on port 0 tells its port in a port file, and serves there") {
  const std::string address = start_with_api(2);
  REQUIRE_FALSE(address.empty());
  auto client = ApiClient::connect(address);
  REQUIRE_MESSAGE(client, (client ? "" : client.error().message));
  auto info = (*client)->info();
  REQUIRE(info);
  CHECK(info->workers == 2);
}

TEST_CASE_FIXTURE(ProcessMesh, "a flood of API connections past the cap leaves the API serving and healthy") {
  const std::string address =
      start_with_api(2, {"--api-max-connections", "32", "--api-login-timeout", "3"}, /*metrics=*/true);
  REQUIRE_FALSE(address.empty());
  const uint16_t api_port = uint16_t(std::stoi(address.substr(address.rfind(':') + 1)));
  // 400 connections that never log in (bounded): 32 are held until the login timeout, the
  // rest closed as they come.
  std::vector<int> flood;
  for (int i = 0; i < 400; ++i) {
    const int fd = test::connect_loopback(api_port);
    if (fd >= 0) flood.push_back(fd);
  }
  CHECK(flood.size() > 32);
  CHECK(test::http_get(mesh->metrics_ports()[0], "/healthz").status == 200);
  // Once the held ones time out, a client logs in and gets the reference tokens.
  std::this_thread::sleep_for(std::chrono::milliseconds(3500));
  auto client = ApiClient::connect(address);
  REQUIRE_MESSAGE(client, (client ? "" : client.error().message));
  GenerateRequest r;
  r.context_ids = random_ids(500, 71);
  r.query_ids = random_ids(4, 72);
  r.mode = AttentionMode::star;
  r.block_size = 256;
  r.max_new_tokens = 5;
  std::vector<int32_t> got;
  auto done = (*client)->generate(r, [&](const TokenChunk& c) {
    got.insert(got.end(), c.ids.begin(), c.ids.end());
    return true;
  });
  REQUIRE_MESSAGE(done, (done ? "" : done.error().message));
  CHECK(got == star(r.context_ids, r.query_ids, 256, 2, 5).ids);
  for (int fd : flood) close(fd);
  CHECK(test::http_get(mesh->metrics_ports()[0], "/healthz").status == 200);
}

TEST_CASE_FIXTURE(ProcessMesh, "a client that goes away during phase 1 stops it on every host at once") {
  const std::string address = start_with_api(2, {}, /*metrics=*/true, {20000, 20000});
  REQUIRE_FALSE(address.empty());
  // 32K context tokens on 2 workers of 1 thread: several seconds of phase 1 each.
  const std::string ids = logs + "/ctx.txt";
  {
    std::ofstream out(ids);
    const auto ctx = random_ids(32768, 81);
    for (size_t i = 0; i < ctx.size(); ++i) out << (i ? "," : "") << ctx[i];
  }
  const std::string cmd = std::string(STARMESH_CLI) + " client generate --connect " + address + " --context-ids-file " +
                          ids + " --prompt-ids 5,6 --mode star --block-size 256 " +
                          "--max-tokens 4 > /dev/null 2>&1 & echo $!";
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p);
  int pid = 0;
  REQUIRE(fscanf(p, "%d", &pid) == 1);
  pclose(p);
  const int router_metrics = mesh->metrics_ports()[0];
  auto router_value = [&](const std::string& series) {
    return test::metric_value(test::http_get(router_metrics, "/metrics").body, series);
  };
  // Wait until the request holds KV on the workers (phase 1 under way), then kill the client.
  for (int i = 0; i < 200 && !(router_value("starmesh_kv_reserved_tokens") > 0); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  REQUIRE(router_value("starmesh_kv_reserved_tokens") > 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  REQUIRE(::kill(pid_t(pid), SIGKILL) == 0);
  const auto t0 = std::chrono::steady_clock::now();
  while (!(router_value("starmesh_requests_total{outcome=\"cancelled\"}") >= 1) &&
         std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10))
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const double noticed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  MESSAGE("the cancel reached the router " << noticed << " s after the client died");
  CHECK(router_value("starmesh_requests_total{outcome=\"cancelled\"}") == 1);
  CHECK(noticed < 2.0);
  for (int i = 0; i < 100 && router_value("starmesh_kv_reserved_tokens") > 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  CHECK(router_value("starmesh_kv_reserved_tokens") == 0);
  // No worker finished its phase 1: each stopped between blocks.
  for (size_t w = 1; w < mesh->metrics_ports().size(); ++w)
    CHECK_FALSE(test::metric_value(test::http_get(mesh->metrics_ports()[w], "/metrics").body,
                                   "starmesh_worker_requests_total{result=\"encoded\"}") >= 1);
  const auto ctx = random_ids(500, 82), query = random_ids(4, 83);
  auto got = run(ctx, query, 256, 5);
  REQUIRE_MESSAGE(got, (got ? "" : got.error().message));
  CHECK(got->ids == star(ctx, query, 256, 2, 5).ids);
}

TEST_CASE_FIXTURE(ProcessMesh, "a kept context has an unguessable id and answers only the token that kept it") {
  const std::string tokens = logs + "/tokens";
  std::ofstream(tokens) << "tenant-a-71c2\ntenant-b-0d9e\n";
  const std::string address = start_with_api(2, {"--api-tokens-file", tokens});
  REQUIRE_FALSE(address.empty());
  auto a = ApiClient::connect(address, "tenant-a-71c2");
  auto b = ApiClient::connect(address, "tenant-b-0d9e");
  REQUIRE(a);
  REQUIRE(b);
  GenerateRequest keep;
  keep.context_ids = random_ids(600, 91);
  keep.query_ids = random_ids(4, 92);
  keep.block_size = 256;
  keep.max_new_tokens = 4;
  keep.keep_context = true;
  auto ignore = [](const TokenChunk&) { return true; };
  auto first = (*a)->generate(keep, ignore);
  REQUIRE_MESSAGE(first, (first ? "" : first.error().message));
  const ContextId id = first->context_id;
  REQUIRE_FALSE(id.empty());
  CHECK(id.hex().size() == 32);
  auto second = (*a)->generate(keep, ignore);  // another kept context: another random id
  REQUIRE(second);
  CHECK(second->context_id != id);
  CHECK((second->context_id.hi != id.hi && second->context_id.lo != id.lo));

  GenerateRequest ask;
  ask.context_id = id;
  ask.query_ids = random_ids(4, 93);
  ask.max_new_tokens = 5;
  // Another token: the same answer as for an id that was never kept.
  auto stolen = (*b)->generate(ask, ignore);
  REQUIRE_FALSE(stolen);
  CHECK(stolen.code() == ErrorCode::not_found);
  const Status dropped = (*b)->drop_context(id);
  REQUIRE_FALSE(dropped);
  CHECK(dropped.code() == ErrorCode::not_found);
  GenerateRequest guess = ask;
  guess.context_id = ContextId{id.hi, id.lo ^ 1};
  auto guessed = (*a)->generate(guess, ignore);
  REQUIRE_FALSE(guessed);
  CHECK(guessed.code() == ErrorCode::not_found);
  // Its owner still asks it, and gets the reference tokens.
  std::vector<int32_t> got;
  auto mine = (*a)->generate(ask, [&](const TokenChunk& c) {
    got.insert(got.end(), c.ids.begin(), c.ids.end());
    return true;
  });
  REQUIRE_MESSAGE(mine, (mine ? "" : mine.error().message));
  CHECK(got == star(keep.context_ids, ask.query_ids, 256, 2, 5).ids);
  CHECK((*a)->drop_context(id));
  auto after = (*a)->generate(ask, ignore);
  REQUIRE_FALSE(after);
  CHECK(after.code() == ErrorCode::not_found);
}

namespace {
// A field of /proc/<pid>/status given in kB ("VmHWM:" is the peak resident size), in bytes.
int64_t status_bytes(pid_t pid, const std::string& field) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind(field, 0) == 0) return std::stoll(line.substr(field.size())) * 1024;
  return -1;
}
}  // namespace

TEST_CASE_FIXTURE(ProcessMesh, "headers announcing 4 GB on the TLS mesh ports cost the router and workers nothing") {
  start("ucx-shm", 2);  // mutual TLS on the control plane, as every test mesh
  std::vector<uint16_t> ports{mesh->router_port()};
  const std::vector<WorkerView> members = mesh->client().members().value();
  for (const WorkerView& w : members)
    ports.push_back(uint16_t(std::stoi(w.info.endpoint.substr(w.info.endpoint.rfind(':') + 1))));
  std::vector<pid_t> pids{mesh->router_pid()};
  pids.insert(pids.end(), mesh->worker_pids().begin(), mesh->worker_pids().end());
  std::vector<int64_t> before;
  for (pid_t pid : pids) before.push_back(status_bytes(pid, "VmHWM:"));
  // On every port: 20 connections, each a 32-byte header whose length fields say 4 GB, then 1 MiB.
  for (uint16_t port : ports)
    for (int c = 0; c < 20; ++c) {
      const int fd = test::connect_loopback(port);
      REQUIRE(fd >= 0);
      const uint32_t header[8] = {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0, 0, 0, 0};
      send(fd, header, sizeof header, MSG_NOSIGNAL);
      std::vector<char> junk(1 << 20, 'x');
      send(fd, junk.data(), junk.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      close(fd);
    }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  // The peak resident size (VmHWM) catches an allocation freed before we look. One message
  // taken at its word would cost 4 GiB; the bound is an eighth of that, far above the reading
  // buffers and the freed memory ASan's quarantine keeps (70 MB seen under a loaded CI).
  for (size_t i = 0; i < pids.size(); ++i) {
    const int64_t peak = status_bytes(pids[i], "VmHWM:");
    MESSAGE("pid " << pids[i] << ": " << before[i] / 1048576 << " MiB peak before, " << peak / 1048576 << " MiB after");
    REQUIRE(before[i] > 0);
    CHECK(peak - before[i] < (int64_t(512) << 20));
  }
  // Nothing was lost: the workers stay and serve.
  CHECK(mesh->client().members().value().size() == 2);
  const auto ctx = random_ids(500, 95), query = random_ids(4, 96);
  auto got = run(ctx, query, 256, 5);
  REQUIRE_MESSAGE(got, (got ? "" : got.error().message));
  CHECK(got->ids == star(ctx, query, 256, 2, 5).ids);
}

namespace {
// The pids whose parent is `parent` (from /proc).
std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> out;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string name = e.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(e.path() / "stat");
    std::string line;
    std::getline(stat, line);
    const size_t close = line.rfind(')');  // "pid (comm) state ppid ..."
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 2));
    char state = 0;
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (ppid == parent && state != 'Z') out.push_back(pid_t(std::stoi(name)));
  }
  return out;
}
bool alive(pid_t pid) { return ::kill(pid, 0) == 0 || errno != ESRCH; }
}  // namespace

TEST_CASE("SIGINT to starmesh demo takes its router, workers and temporary folder with it") {
  int out[2];
  REQUIRE(pipe(out) == 0);
  const pid_t demo = fork();
  REQUIRE(demo >= 0);
  if (demo == 0) {
    dup2(out[1], 1);
    close(out[0]);
    execl(STARMESH_CLI, STARMESH_CLI, "demo", "--workers", "2", "--context-tokens", "4000", "--block-size", "256",
          "--device", "cpu", static_cast<char*>(nullptr));
    _exit(127);
  }
  close(out[1]);
  // Wait for "mesh up in ... logs in DIR)" on its stdout.
  std::string text, logs;
  char buf[512];
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (logs.empty() && std::chrono::steady_clock::now() < until) {
    const ssize_t n = read(out[0], buf, sizeof buf);
    if (n <= 0) break;
    text.append(buf, size_t(n));
    const size_t at = text.find("logs in ");
    const size_t end = at == std::string::npos ? at : text.find(')', at);
    if (end != std::string::npos) logs = text.substr(at + 8, end - at - 8);
  }
  INFO(text);
  REQUIRE_FALSE(logs.empty());
  CHECK(std::filesystem::exists(logs));
  const std::vector<pid_t> children = children_of(demo);
  CHECK(children.size() == 3);  // the router and 2 workers
  REQUIRE(::kill(demo, SIGINT) == 0);
  int status = 0;
  REQUIRE(waitpid(demo, &status, 0) == demo);
  close(out[0]);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 128 + SIGINT);
  bool gone = false;
  for (int i = 0; i < 100 && !gone; ++i) {
    gone = std::none_of(children.begin(), children.end(), alive);
    if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  CHECK(gone);
  CHECK_FALSE(std::filesystem::exists(logs));
}

TEST_CASE_FIXTURE(
    ProcessMesh,
    "mutual TLS: peers without a certificate from the mesh's CA cannot join or ask, and the mesh serves on") {
  start("ucx-shm", 2);
  const std::string router = "127.0.0.1:" + std::to_string(mesh->router_port());
  const std::string worker_args = "worker --router " + router + " --capacity 4096 --threads 1 --register-timeout 3 ";
  const std::string rogue_tls =
      "--tls-ca " + tls.rogue.ca_file + " --tls-cert " + tls.rogue.cert_file + " --tls-key " + tls.rogue.key_file;
  for (int round = 0; round < 2; ++round) {
    CAPTURE(round);
    auto plain = run_cli(worker_args + "2>&1");  // no certificate at all
    CHECK(plain.exited());
    CHECK(plain.code() != 0);
    CHECK(plain.out.find("cannot reach the router") != std::string::npos);
    auto self_signed = run_cli(worker_args + rogue_tls + " 2>&1");  // a certificate the CA did not sign
    CHECK(self_signed.exited());
    CHECK(self_signed.code() != 0);
    // A client actor system without the mesh's certificate cannot reach the router either.
    MeshConfig plain_cfg{{1, true, false}};
    caf::actor_system plain_sys{plain_cfg};
    auto reached = connect_router(plain_sys, "127.0.0.1", mesh->router_port());
    CHECK_FALSE(reached);
    // The refused handshakes left the real connections alone: the workers stay and serve.
    CHECK(mesh->client().members().value().size() == 2);
    const auto ctx = random_ids(500, 51 + uint32_t(round)), query = random_ids(4, 52);
    auto got = run(ctx, query, 256, 6);
    REQUIRE_MESSAGE(got, (got ? "" : got.error().message));
    CHECK(got->ids == star(ctx, query, 256, 2, 6).ids);
  }
}

TEST_CASE_FIXTURE(ProcessMesh,
                  "liveness: a worker that stops answering is taken out within seconds, its request runs on") {
  // Phase 1 may take 600 s (the default): only the heartbeat (defaults: every 1 s, 5 s to
  // answer) can notice a stopped worker early. The request on it is planned again on the
  // worker left and answers as if it had run there.
  start("ucx-tcp", 2);
  REQUIRE(mesh->client().members().value().size() == 2);
  REQUIRE(mesh->signal_worker(0, SIGSTOP));
  const auto t0 = std::chrono::steady_clock::now();
  const auto ctx = random_ids(600, 61), query = random_ids(4, 62);
  auto got = run(ctx, query, 256, 4);  // placed on both workers
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  REQUIRE_MESSAGE(got, (got ? "" : got.error().message));
  MESSAGE("recovered after " << waited << " s");
  CHECK(waited < 12);
  CHECK(got->summary.hosts == 1);
  CHECK(got->ids == star(ctx, query, 256, 1, 4).ids);
  const auto left = mesh->client().members().value();
  CHECK(left.size() == 1);
  const auto ctx2 = random_ids(600, 63), query2 = random_ids(4, 64);
  auto after = run(ctx2, query2, 256, 6);
  REQUIRE_MESSAGE(after, (after ? "" : after.error().message));
  CHECK(after->summary.hosts == 1);
  CHECK(after->ids == star(ctx2, query2, 256, 1, 6).ids);
  REQUIRE(mesh->signal_worker(0, SIGCONT));  // it wakes to the router's stop message and exits
}
