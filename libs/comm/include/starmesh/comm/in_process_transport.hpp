#pragma once
// A star group inside one process, for protocol tests with one thread per rank: the test
// builds an InProcessFabric of N ranks and hands fabric.endpoint(r) to rank r's thread.
// Messages are copied into mailboxes keyed by (source, destination, tag): a send returns at
// once (the copy is buffered), a receive waits on a condition variable until its message
// arrives or the deadline passes. Host tensors only.
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <vector>

#include "starmesh/comm/transport.hpp"

namespace starmesh {

class InProcessFabric {
 public:
  explicit InProcessFabric(int size);
  ~InProcessFabric();
  InProcessFabric(const InProcessFabric&) = delete;
  InProcessFabric& operator=(const InProcessFabric&) = delete;

  int size() const { return int(endpoints_.size()); }
  // Rank `rank`'s view of the group; lives as long as the fabric. Thread-safe.
  transport_i& endpoint(int rank);

 private:
  class Endpoint;
  using Key = std::tuple<int, int, uint64_t>;  // (source, destination, tag)

  void post(int src, int dst, uint64_t tag, const Tensor& t);
  Status collect(int dst, std::span<const Transfer> recvs, Deadline deadline, const std::function<bool()>& cancelled);

  std::mutex mu_;
  std::vector<std::unique_ptr<std::condition_variable>> arrived_;  // one per destination rank
  std::map<Key, std::deque<std::vector<std::byte>>> mailboxes_;
  std::vector<std::unique_ptr<Endpoint>> endpoints_;
};

}  // namespace starmesh
