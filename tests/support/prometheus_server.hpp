#pragma once
// A real Prometheus server (Debian's `prometheus`, installed by tools/setup.sh) scraping the
// given 127.0.0.1 ports every second, with its query API on a free port; stopped on
// destruction. Tests ask it what it scraped.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "support/http_client.hpp"

namespace starmesh::test {

class PrometheusServer {
 public:
  explicit PrometheusServer(const std::vector<int>& targets) {
    char tmpl[] = "/tmp/starmesh-prom-XXXXXX";
    dir_ = mkdtemp(tmpl) ? tmpl : "";
    port_ = free_port();
    std::ofstream cfg(dir_ + "/prometheus.yml");
    cfg << "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: starmesh\n"
        << "    static_configs:\n      - targets: [";
    for (size_t i = 0; i < targets.size(); ++i) cfg << (i ? ", " : "") << "'127.0.0.1:" << targets[i] << "'";
    cfg << "]\n";
    cfg.close();
    pid_ = fork();
    if (pid_ == 0) {
      const std::string log = dir_ + "/prometheus.log";
      FILE* f = std::freopen(log.c_str(), "w", stderr);
      (void)f;
      const std::string config = "--config.file=" + dir_ + "/prometheus.yml";
      const std::string storage = "--storage.tsdb.path=" + dir_ + "/data";
      const std::string listen = "--web.listen-address=127.0.0.1:" + std::to_string(port_);
      execlp("prometheus", "prometheus", config.c_str(), storage.c_str(), listen.c_str(), "--log.level=warn",
             static_cast<char*>(nullptr));
      _exit(127);
    }
  }
  ~PrometheusServer() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
    }
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  // The value of an instant query with one result, polled until `accept` takes it or the
  // deadline passes (nullopt then).
  template <class Accept>
  std::optional<double> wait_for(const std::string& promql, Accept accept, std::chrono::seconds deadline) {
    const auto until = std::chrono::steady_clock::now() + deadline;
    std::optional<double> last;
    while (std::chrono::steady_clock::now() < until) {
      if (auto v = query(promql)) {
        last = v;
        if (accept(*v)) return v;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
    return std::nullopt;
  }

  std::optional<double> query(const std::string& promql) const {
    const auto values = query_all(promql);
    if (!values || values->size() != 1) return std::nullopt;
    return values->front();
  }

  // Every series' value of an instant query (NaN where Prometheus says NaN); nullopt when the
  // query fails.
  std::optional<std::vector<double>> query_all(const std::string& promql) const {
    std::string q;
    for (unsigned char c : promql) {  // percent-encode the query string
      if (std::isalnum(c) || c == '_' || c == '.' || c == '-')
        q += char(c);
      else {
        char hex[4];
        std::snprintf(hex, sizeof hex, "%%%02X", c);
        q += hex;
      }
    }
    const HttpResponse r = http_get(port_, "/api/v1/query?query=" + q);
    if (r.status != 200) return std::nullopt;
    const auto j = nlohmann::json::parse(r.body, nullptr, false);
    if (j.is_discarded() || j.value("status", "") != "success") return std::nullopt;
    const auto& result = j["data"]["result"];
    if (!result.is_array()) return std::nullopt;
    std::vector<double> out;
    for (const auto& series : result) out.push_back(std::stod(series["value"][1].get<std::string>()));
    return out;
  }

  std::string log() const {
    std::ifstream f(dir_ + "/prometheus.log");
    return std::string(std::istreambuf_iterator<char>(f), {});
  }

 private:
  std::string dir_;
  int port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace starmesh::test
