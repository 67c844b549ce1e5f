#pragma once
// Several API clients at once, one thread each, every one sending its own request to a router's
// Cap'n Proto API: what each got (tokens, or its error), and how many have finished so far.
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "starmesh/api/api_client.hpp"

namespace starmesh::test {

class ConcurrentClients {
 public:
  ConcurrentClients(const std::string& address, std::vector<GenerateRequest> requests)
      : tokens(requests.size()), errors(requests.size()) {
    for (size_t i = 0; i < requests.size(); ++i)
      threads_.emplace_back([this, address, i, r = std::move(requests[i])] {
        auto client = ApiClient::connect(address);
        if (!client) {
          errors[i] = client.error().message;
        } else {
          auto s = (*client)->generate(r, [&](const TokenChunk& c) {
            tokens[i].insert(tokens[i].end(), c.ids.begin(), c.ids.end());
            return true;
          });
          if (!s) errors[i] = s.error().message;
        }
        ++done_;
      });
  }
  ~ConcurrentClients() { join(); }

  int done() const { return done_.load(); }
  void join() {
    for (auto& t : threads_)
      if (t.joinable()) t.join();
  }

  // Read after join().
  std::vector<std::vector<int32_t>> tokens;
  std::vector<std::string> errors;

 private:
  std::atomic<int> done_{0};
  std::vector<std::thread> threads_;
};

}  // namespace starmesh::test
