#pragma once
// A group of ranks as processes on this machine, for tests, benchmarks and one-machine
// demos: run_local_group forks `size` children of this program, each runs `body` with a
// LocalBootstrap (its rank, and an allgather of small blobs relayed by the parent through
// pipes: UCX worker addresses, an NCCL unique id), and the parent waits for every child
// up to a timeout. Transports are created inside the children, after the fork.
//
// Fork from a process that has not started UCX or CUDA itself; call it from one thread.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "starmesh/comm/ucx_transport.hpp"

namespace starmesh {

class LocalBootstrap {
 public:
  LocalBootstrap(int rank, int size, int to_parent, int from_parent)
      : rank_(rank), size_(size), to_parent_(to_parent), from_parent_(from_parent) {}
  int rank() const { return rank_; }
  int size() const { return size_; }
  // Every rank calls it with its blob (empty is fine) and gets every rank's, indexed by
  // rank; it is also a barrier. All ranks must make the same sequence of calls.
  Expected<std::vector<std::vector<uint8_t>>> allgather(std::span<const uint8_t> blob);
  Status barrier() { return allgather({}).status(); }

 private:
  int rank_, size_;
  int to_parent_, from_parent_;
};

// Runs body in `size` child processes; returns one Status per rank: ok, the error its body
// returned, or what became of it (exit code, signal, killed at the timeout). A rank that
// leaves while the others wait in an allgather makes the whole group fail.
std::vector<Status> run_local_group(int size, const std::function<Status(LocalBootstrap&)>& body,
                                    std::chrono::milliseconds timeout);

// Inside a child: a UCX context, the addresses through the bootstrap, and the group, its
// messages authenticated under a key rank 0 makes (bare only when `authenticated` is false:
// benchmarks measuring what the MAC costs).
Expected<std::unique_ptr<UcxTransport>> connect_ucx(LocalBootstrap& bootstrap, const UcxOptions& options,
                                                    bool authenticated = true);

}  // namespace starmesh
