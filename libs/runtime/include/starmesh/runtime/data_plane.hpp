#pragma once
// The data-plane glue of a worker: its address (bytes the router hands to the other
// workers of a request) and, per request, a transport over the request's star group, in
// which the worker's rank is its host index in the block plan (the query host is the last).
// Implementations: UCX (one UcxContext per process; TCP or shared memory) and in-process
// (one InProcessFabric per request, for tests and a mesh inside one process).
//
// Every request attempt has a data-plane key (EncodeOrder::data_plane_key, made by the request
// driver): over UCX each message is authenticated under it (group_auth.hpp), so a peer that
// knows a worker's address but not the key cannot put data into the request. The in-process
// fabric has nothing to authenticate: it never leaves the process.
//
// Phase 2 on the wire (phase2_tag): per step, the coordinator sends each shard host a
// header, then per layer Q; each shard host answers every Q with its (o, lse).
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "starmesh/comm/transport.hpp"
#include "starmesh/comm/ucx_transport.hpp"
#include "starmesh/service/request.hpp"

namespace starmesh {

class data_plane_i {
 public:
  virtual ~data_plane_i() = default;
  // "ucx-tcp", "ucx-shm", "ucx-auto", "in-process": every worker of a mesh uses the same.
  virtual std::string name() const = 0;
  virtual std::vector<uint8_t> address() const = 0;
  // The group of request `request_id` (the attempt's mesh id): addresses[r] is rank r's
  // address(), this worker is `rank`, `key` the attempt's data-plane key. At most one live
  // group per request on a worker.
  virtual Expected<std::unique_ptr<transport_i>> join(uint64_t request_id, int rank,
                                                      const std::vector<std::vector<uint8_t>>& addresses,
                                                      const MessageKey& key) = 0;
};

// UCX over host memory. transports: "tcp", "shm" or "auto" (UcxOptions); net_devices "lo"
// keeps every byte on loopback.
Expected<std::unique_ptr<data_plane_i>> make_ucx_data_plane(const UcxOptions& options);

// NCCL for the tensors on the GPU, UCX (`options`) for the host messages: phase 2's step
// headers and the communicator's unique id, which rank 0 sends the others when a request's
// group forms, authenticated under the request's key like every UCX message (SplitTransport).
// One communicator per request, on CUDA device `cuda_device`, its transfers ordered after the
// work on `compute_stream` (the worker backend's). Where built without CUDA: an error.
// NCCL's own traffic is not authenticated: docs/SECURITY.md says what this plane needs.
Expected<std::unique_ptr<data_plane_i>> make_nccl_data_plane(const UcxOptions& options, int cuda_device,
                                                             void* compute_stream);

// Data planes for workers that live in one process: each plane() is one worker's; the
// planes of one hub reach each other through an InProcessFabric per request.
class InProcessHub : public std::enable_shared_from_this<InProcessHub> {
 public:
  // carries_device_memory: its groups say they do (transport_i::carries_device_memory), so
  // that the device-memory path of phase 2 runs on the CPU backend, whose device is the host.
  static std::shared_ptr<InProcessHub> create(bool carries_device_memory = false) {
    return std::shared_ptr<InProcessHub>(new InProcessHub(carries_device_memory));
  }
  std::unique_ptr<data_plane_i> plane();

  struct Group;
  std::shared_ptr<Group> group(uint64_t request_id, int size);

 private:
  explicit InProcessHub(bool carries_device_memory) : device_memory_(carries_device_memory) {}
  const bool device_memory_;
  std::mutex mu_;
  uint32_t next_address_ = 0;
  std::map<uint64_t, std::weak_ptr<Group>> groups_;
};

// -- phase 2 on the wire -------------------------------------------------------------------------

// nccl_id: the NCCL data plane's communicator id, from rank 0 to the others as the group forms.
enum class Phase2Kind : uint32_t { header = 1, query = 2, partial = 3, nccl_id = 4 };

// The 32-bit user tag of one phase-2 message: step (20 bits), layer (8), kind (4). The
// request is the group (UCX puts the group id in the upper bits of the UCP tag; in-process
// groups are separate fabrics), so concurrent requests never mix.
constexpr uint64_t phase2_tag(uint32_t step, int layer, Phase2Kind kind) {
  return (uint64_t(step & 0xfffffu) << 12) | (uint64_t(uint32_t(layer) & 0xffu) << 4) | uint64_t(kind);
}
constexpr int kMaxPhase2Layers = 256;
// A step's rows: a query's at most (a header is checked against it before anything is sized by it).
constexpr int64_t kMaxPhase2Rows = kMaxQueryTokens;

// The header of one step, i32 [4].
enum class Phase2Op : int32_t { step = 1, done = 2 };
struct Phase2Header {
  Phase2Op op = Phase2Op::step;
  int32_t step = 0;
  int32_t rows = 0;    // query rows of this step (the query, then 1 per generated token)
  int32_t layers = 0;  // sanity: both sides run the same model
};
Tensor encode_header(const Phase2Header& h);
Phase2Header decode_header(const Tensor& t);

}  // namespace starmesh
