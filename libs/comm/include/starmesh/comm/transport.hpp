#pragma once
// The data plane of a star group: tensors between ranks, matched by (peer, tag), every call
// bounded by a deadline. Implementations: UCX (host memory; TCP, shared memory), NCCL (GPU
// memory), in-process (tests). Control messages go through the actors, never through here.
//
// One primitive, `exchange`: a batch of sends and receives all in flight at once (an NCCL
// group, MPI_Waitall), so a broadcast, a gather or phase 2's (o, lse) replies never wait on
// one peer before asking the next. send / recv / broadcast / gather are built on it.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "starmesh/core/expected.hpp"
#include "starmesh/core/tensor.hpp"

namespace starmesh {

using Deadline = std::chrono::steady_clock::time_point;
inline Deadline deadline_in(std::chrono::milliseconds ms) { return std::chrono::steady_clock::now() + ms; }

enum class TransferKind : uint8_t { send, recv };

// One send or receive of a batch. The tensor's bytes are the message (any dtype and shape:
// only the byte count travels); a receive's byte count is the expected message size.
struct Transfer {
  TransferKind kind = TransferKind::send;
  int peer = 0;
  uint64_t tag = 0;
  Tensor tensor;

  static Transfer send(int peer, uint64_t tag, Tensor t) { return {TransferKind::send, peer, tag, std::move(t)}; }
  static Transfer recv(int peer, uint64_t tag, Tensor t) { return {TransferKind::recv, peer, tag, std::move(t)}; }
};
// "recv from peer 1, tag 7, 4096 B": for error messages.
std::string describe(const Transfer& t);

class transport_i {
 public:
  virtual ~transport_i() = default;
  virtual std::string name() const = 0;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Whether tensors on a GPU go on the wire as they are (NCCL): a caller keeps its messages
  // on the device. Otherwise (UCX, in-process, unless told) every tensor must be on the host.
  virtual bool carries_device_memory() const { return false; }

  // Starts every transfer at once and returns when all are complete: the sends' tensors may
  // be reused, the receives' tensors hold the messages. Messages between one pair of ranks
  // under one tag arrive in the order they were sent. A receive whose message has another
  // size fails, naming both sizes. At the deadline the unfinished transfers are cancelled
  // and the error names each (peer, tag) and the time waited. Whatever fails, every buffer
  // is released by the transport before this returns; the first error is returned.
  virtual Status exchange(std::span<const Transfer> transfers, Deadline deadline) = 0;

  // Sends the bytes of `t` to `peer` under `tag`. Returns once `t` may be reused.
  Status send(int peer, uint64_t tag, const Tensor& t, Deadline deadline);
  // Receives into `into` (its size is the expected message size; a different size is an
  // error naming both) the message from `peer` under `tag`.
  Status recv(int peer, uint64_t tag, const Tensor& into, Deadline deadline);

  // Root sends `t` to every other rank; the others receive into `t`.
  virtual Status broadcast(int root, uint64_t tag, const Tensor& t, Deadline deadline);
  // Every rank sends `t` to root; root gets out[r] = rank r's tensor (out[root] = its own;
  // `out` has size() entries on root and is ignored elsewhere).
  virtual Status gather(int root, uint64_t tag, const Tensor& t, std::span<const Tensor> out, Deadline deadline);

  // Once *flag is true, the call in progress and every later one end as at their deadline,
  // with code `cancelled` (a deadline gives `timeout`): a request that was stopped does not sit out a step
  // timeout waiting for a silent peer. The flag must outlive its use; null: none.
  virtual void cancel_on(const std::atomic<bool>* flag) { cancel_ = flag; }

 protected:
  bool cancelled() const { return cancel_ && cancel_->load(std::memory_order_relaxed); }

 private:
  const std::atomic<bool>* cancel_ = nullptr;
};

}  // namespace starmesh
