// The NCCL data plane (data_plane.hpp): a request's group is its UCX group for the host
// messages, and an NCCL communicator made through it for the tensors on the GPU.
#include "starmesh/runtime/data_plane.hpp"

#ifdef STARMESH_COMM_NCCL
#include <cstring>

#include "starmesh/comm/nccl_transport.hpp"
#include "starmesh/comm/split_transport.hpp"
#include "ucx_group.hpp"
#endif

namespace starmesh {

#ifdef STARMESH_COMM_NCCL
namespace {

// How long a worker waits for the others of a request to make the communicator with it:
// they join when their order comes, within a control round trip of each other.
constexpr auto kJoinTimeout = std::chrono::seconds(30);

// Rank 0 makes the communicator's id and sends it to the others over the UCX group: it is
// authenticated under the request's key, so a peer without the key cannot join the
// communicator or point a worker at its own.
Expected<std::vector<uint8_t>> share_unique_id(transport_i& host, Deadline deadline) {
  const uint64_t tag = phase2_tag(0, 0, Phase2Kind::nccl_id);
  Tensor id = Tensor::zeros(DType::i32, {int64_t(kNcclUniqueIdBytes / sizeof(int32_t))});
  static_assert(kNcclUniqueIdBytes % sizeof(int32_t) == 0);
  if (host.rank() == 0) {
    SM_ASSIGN(fresh, nccl_unique_id());
    if (fresh.size() != kNcclUniqueIdBytes) return make_error("NCCL gave an id of ", fresh.size(), " B");
    std::memcpy(id.data(), fresh.data(), fresh.size());
    std::vector<Transfer> sends;
    for (int r = 1; r < host.size(); ++r) sends.push_back(Transfer::send(r, tag, id));
    SM_TRY(host.exchange(sends, deadline));
    return fresh;
  }
  SM_TRY(host.recv(0, tag, id, deadline));
  const auto* bytes = static_cast<const uint8_t*>(id.data());
  return std::vector<uint8_t>(bytes, bytes + kNcclUniqueIdBytes);
}

class NcclDataPlane final : public data_plane_i {
 public:
  NcclDataPlane(UcxContext ctx, int device, void* stream) : ctx_(std::move(ctx)), device_(device), stream_(stream) {}
  std::string name() const override { return "nccl"; }
  std::vector<uint8_t> address() const override { return ctx_.local_address(); }
  Expected<std::unique_ptr<transport_i>> join(uint64_t request_id, int rank,
                                              const std::vector<std::vector<uint8_t>>& addresses,
                                              const MessageKey& key) override {
    const Deadline deadline = std::chrono::steady_clock::now() + kJoinTimeout;
    SM_ASSIGN(host, join_ucx_group(ctx_, request_id, rank, addresses, key));
    SM_ASSIGN(id, share_unique_id(*host, deadline));
    SM_ASSIGN(nccl, NcclTransport::create(rank, int(addresses.size()), id, device_, static_cast<CUstream_st*>(stream_),
                                          deadline));
    SM_ASSIGN(split, SplitTransport::create(std::move(host), std::move(nccl)));
    return std::unique_ptr<transport_i>(std::move(split));
  }

 private:
  UcxContext ctx_;
  int device_;
  void* stream_;
};

}  // namespace

Expected<std::unique_ptr<data_plane_i>> make_nccl_data_plane(const UcxOptions& options, int cuda_device,
                                                             void* compute_stream) {
  SM_ASSIGN(ctx, UcxContext::create(options));
  return std::unique_ptr<data_plane_i>(new NcclDataPlane(std::move(ctx), cuda_device, compute_stream));
}

#else

Expected<std::unique_ptr<data_plane_i>> make_nccl_data_plane(const UcxOptions&, int, void*) {
  return make_error(ErrorCode::invalid_argument, "the NCCL data plane needs a build with CUDA (STARMESH_CUDA=ON)");
}

#endif

}  // namespace starmesh
