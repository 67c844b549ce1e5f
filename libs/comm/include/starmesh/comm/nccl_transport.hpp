#pragma once
// The NCCL data plane: GPU tensors between ranks, one GPU per rank (NCCL refuses two ranks
// of one communicator on one device). Built only with STARMESH_CUDA (STARMESH_COMM_NCCL
// is then defined).
//
//   rank 0: auto id = nccl_unique_id();            // hand it to every rank (actors, bootstrap)
//   every rank: auto t = NcclTransport::create(rank, size, id, device, stream, deadline);
//
// NCCL has no tags: transfers between two ranks match in the order they are issued, so
// both sides must issue them in the same order (tags are not on the wire). It has
// no message sizes either: a receive of another size than its send is not detected and
// hangs until the deadline or corrupts; the phase-2 protocol fixes every size in advance.
// Every call enqueues on the communicator's own stream, after the work queued so far on the
// caller's stream (`after`: the stream that writes and reads the tensors), then polls that
// own stream and the communicator until done. Its own stream, because a receive blocks its
// stream until the peer sends: on the compute stream, other requests' kernels queued behind
// it would wait on this peer (and two workers serving each other would deadlock).
// When a call returns, what it received is in place for any stream;
// at the deadline the communicator is aborted (ncclCommAbort) and every later call fails:
// build a new one. The communicator is non-blocking, so creation also honours a deadline.
#include <memory>
#include <span>
#include <vector>

#include "starmesh/comm/transport.hpp"

struct CUstream_st;  // cudaStream_t, without the CUDA headers

namespace starmesh {

// NCCL_UNIQUE_ID_BYTES, without NCCL's header.
constexpr size_t kNcclUniqueIdBytes = 128;

// A fresh NCCL unique id (kNcclUniqueIdBytes bytes) for one communicator.
Expected<std::vector<uint8_t>> nccl_unique_id();

class NcclTransport final : public transport_i {
 public:
  // Joins the communicator `unique_id` as `rank` of `size` on CUDA device `cuda_device`; each
  // call runs after the work queued on `after` (nullptr: the legacy default stream). Waits
  // for every rank to join until `deadline`.
  static Expected<std::unique_ptr<NcclTransport>> create(int rank, int size, std::span<const uint8_t> unique_id,
                                                         int cuda_device, CUstream_st* after, Deadline deadline);
  ~NcclTransport() override;
  NcclTransport(const NcclTransport&) = delete;
  NcclTransport& operator=(const NcclTransport&) = delete;

  std::string name() const override { return "nccl"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  bool carries_device_memory() const override { return true; }

  // Tensors must live on this rank's device. One NCCL group of ncclSend / ncclRecv.
  Status exchange(std::span<const Transfer> transfers, Deadline deadline) override;
  // ncclBroadcast, in place.
  Status broadcast(int root, uint64_t tag, const Tensor& t, Deadline deadline) override;

 private:
  struct Comm;
  NcclTransport(std::unique_ptr<Comm> comm, int rank, int size);
  Status check(const Tensor& t, const std::string& what) const;
  // Makes the own stream wait for the work queued so far on the caller's.
  Status follow(const std::string& what);
  Status wait(Deadline deadline, std::chrono::steady_clock::time_point start, const std::string& what);

  std::unique_ptr<Comm> comm_;
  int rank_, size_;
};

}  // namespace starmesh
