#include "starmesh/runtime/data_plane.hpp"

#include <cstring>

#include "starmesh/attention/block_plan.hpp"
#include "starmesh/comm/in_process_transport.hpp"
#include "ucx_group.hpp"

namespace starmesh {

static_assert(kMaxHosts <= kMaxUcxRanks, "every host of a request is a rank of its UCX group");

// -- UCX -------------------------------------------------------------------------------------------

Expected<std::unique_ptr<transport_i>> join_ucx_group(UcxContext& ctx, uint64_t request_id, int rank,
                                                      const std::vector<std::vector<uint8_t>>& addresses,
                                                      const MessageKey& key) {
  // The group id is the request id modulo 2^20: requests that far apart are never live
  // together, and a message left queued for an old request (a peer sent after it ended)
  // meets a new one under its id only a million requests later (where it fails as forged).
  SM_ASSIGN(t, ctx.connect(rank, int(addresses.size()), addresses, GroupKey{key, request_id},
                           uint32_t(request_id & kMaxUcxGroupId)));
  return std::unique_ptr<transport_i>(std::move(t));
}

namespace {

class UcxDataPlane final : public data_plane_i {
 public:
  UcxDataPlane(UcxContext ctx, std::string name) : ctx_(std::move(ctx)), name_(std::move(name)) {}
  std::string name() const override { return name_; }
  std::vector<uint8_t> address() const override { return ctx_.local_address(); }
  Expected<std::unique_ptr<transport_i>> join(uint64_t request_id, int rank,
                                              const std::vector<std::vector<uint8_t>>& addresses,
                                              const MessageKey& key) override {
    return join_ucx_group(ctx_, request_id, rank, addresses, key);
  }

 private:
  UcxContext ctx_;
  std::string name_;
};

}  // namespace

Expected<std::unique_ptr<data_plane_i>> make_ucx_data_plane(const UcxOptions& options) {
  SM_ASSIGN(ctx, UcxContext::create(options));
  return std::unique_ptr<data_plane_i>(new UcxDataPlane(std::move(ctx), "ucx-" + options.transports));
}

// -- in-process ------------------------------------------------------------------------------------

struct InProcessHub::Group {
  explicit Group(int size) : fabric(size) {}
  InProcessFabric fabric;
};

std::shared_ptr<InProcessHub::Group> InProcessHub::group(uint64_t request_id, int size) {
  std::lock_guard lock(mu_);
  for (auto it = groups_.begin(); it != groups_.end();)  // forget the groups of finished requests
    it = it->second.expired() ? groups_.erase(it) : std::next(it);
  auto& slot = groups_[request_id];
  auto g = slot.lock();
  if (!g || g->fabric.size() != size) {
    g = std::make_shared<Group>(size);
    slot = g;
  }
  return g;
}

namespace {

// One rank of a request's fabric; keeps the fabric alive.
class InProcessMember final : public transport_i {
 public:
  InProcessMember(std::shared_ptr<InProcessHub::Group> g, int rank, bool device_memory)
      : group_(std::move(g)), rank_(rank), device_memory_(device_memory) {}
  std::string name() const override { return "in-process"; }
  int rank() const override { return rank_; }
  int size() const override { return group_->fabric.size(); }
  bool carries_device_memory() const override { return device_memory_; }
  void cancel_on(const std::atomic<bool>* flag) override { group_->fabric.endpoint(rank_).cancel_on(flag); }
  Status exchange(std::span<const Transfer> transfers, Deadline deadline) override {
    return group_->fabric.endpoint(rank_).exchange(transfers, deadline);
  }

 private:
  std::shared_ptr<InProcessHub::Group> group_;
  int rank_;
  bool device_memory_;
};

class InProcessPlane final : public data_plane_i {
 public:
  InProcessPlane(std::shared_ptr<InProcessHub> hub, uint32_t address, bool device_memory)
      : hub_(std::move(hub)), address_(address), device_memory_(device_memory) {}
  std::string name() const override { return "in-process"; }
  std::vector<uint8_t> address() const override {
    std::vector<uint8_t> a(sizeof address_);
    std::memcpy(a.data(), &address_, sizeof address_);
    return a;
  }
  Expected<std::unique_ptr<transport_i>> join(uint64_t request_id, int rank,
                                              const std::vector<std::vector<uint8_t>>& addresses,
                                              const MessageKey&) override {
    if (rank < 0 || rank >= int(addresses.size()))
      return make_error("in-process data plane: rank ", rank, " is not in a group of ", addresses.size());
    if (addresses[size_t(rank)] != address())
      return make_error("in-process data plane: rank ", rank, " of request ", request_id,
                        " is another worker's address");
    return std::unique_ptr<transport_i>(
        new InProcessMember(hub_->group(request_id, int(addresses.size())), rank, device_memory_));
  }

 private:
  std::shared_ptr<InProcessHub> hub_;
  uint32_t address_;
  bool device_memory_;
};

}  // namespace

std::unique_ptr<data_plane_i> InProcessHub::plane() {
  std::lock_guard lock(mu_);
  return std::unique_ptr<data_plane_i>(new InProcessPlane(shared_from_this(), next_address_++, device_memory_));
}

// -- phase-2 header --------------------------------------------------------------------------------

Tensor encode_header(const Phase2Header& h) {
  const int32_t v[4] = {int32_t(h.op), h.step, h.rows, h.layers};
  return Tensor::from_i32(v, {4});
}

Phase2Header decode_header(const Tensor& t) {
  const int32_t* v = t.data_as<int32_t>();
  return {Phase2Op(v[0]), v[1], v[2], v[3]};
}

}  // namespace starmesh
