#include "starmesh/comm/in_process_transport.hpp"

#include <algorithm>
#include <cstring>

namespace starmesh {

class InProcessFabric::Endpoint final : public transport_i {
 public:
  Endpoint(InProcessFabric& fabric, int rank) : fabric_(fabric), rank_(rank) {}
  std::string name() const override { return "in-process"; }
  int rank() const override { return rank_; }
  int size() const override { return fabric_.size(); }

  Status exchange(std::span<const Transfer> transfers, Deadline deadline) override {
    for (const Transfer& t : transfers) {
      if (t.peer < 0 || t.peer >= size())
        return make_error("in-process ", describe(t), ": no such rank (group of ", size(), ")");
      if (t.tensor.nbytes() > 0 && !t.tensor.defined())
        return make_error("in-process ", describe(t), ": the tensor has no storage");
      if (t.tensor.device().kind != DeviceKind::cpu)
        return make_error("in-process ", describe(t), ": host tensors only, this one is on ",
                          to_string(t.tensor.device()));
    }
    std::vector<Transfer> recvs;
    for (const Transfer& t : transfers) {
      if (t.kind == TransferKind::send)
        fabric_.post(rank_, t.peer, t.tag, t.tensor);
      else
        recvs.push_back(t);
    }
    return fabric_.collect(rank_, recvs, deadline, [this] { return cancelled(); });
  }

 private:
  InProcessFabric& fabric_;
  int rank_;
};

InProcessFabric::InProcessFabric(int size) {
  for (int r = 0; r < size; ++r) {
    arrived_.push_back(std::make_unique<std::condition_variable>());
    endpoints_.push_back(std::make_unique<Endpoint>(*this, r));
  }
}

InProcessFabric::~InProcessFabric() = default;

transport_i& InProcessFabric::endpoint(int rank) { return *endpoints_.at(size_t(rank)); }

void InProcessFabric::post(int src, int dst, uint64_t tag, const Tensor& t) {
  std::vector<std::byte> bytes(t.nbytes());
  if (!bytes.empty()) std::memcpy(bytes.data(), t.data(), bytes.size());
  {
    std::lock_guard lock(mu_);
    mailboxes_[{src, dst, tag}].push_back(std::move(bytes));
  }
  arrived_[size_t(dst)]->notify_all();
}

Status InProcessFabric::collect(int dst, std::span<const Transfer> recvs, Deadline deadline,
                                const std::function<bool()>& cancelled) {
  const auto start = std::chrono::steady_clock::now();
  std::vector<bool> done(recvs.size(), false);
  size_t remaining = recvs.size();
  Status first;
  bool timed_out = false, was_cancelled = false;
  std::unique_lock lock(mu_);
  while (true) {
    for (size_t i = 0; i < recvs.size(); ++i) {
      if (done[i]) continue;
      const Transfer& t = recvs[i];
      auto box = mailboxes_.find({t.peer, dst, t.tag});
      if (box == mailboxes_.end() || box->second.empty()) continue;
      std::vector<std::byte> msg = std::move(box->second.front());
      box->second.pop_front();
      if (box->second.empty()) mailboxes_.erase(box);
      done[i] = true;
      --remaining;
      if (msg.size() != t.tensor.nbytes()) {
        if (first)
          first = make_error("in-process rank ", dst, " ", describe(t), ": the message has ", msg.size(),
                             " B but the receive expects ", t.tensor.nbytes(), " B");
      } else if (!msg.empty()) {
        std::memcpy(t.tensor.data(), msg.data(), msg.size());
      }
    }
    if (remaining == 0) break;
    if (timed_out) {  // one last look was taken above; report what is still missing
      const auto waited =
          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
      std::string missing;
      for (size_t i = 0; i < recvs.size(); ++i)
        if (!done[i]) missing += (missing.empty() ? "" : "; ") + describe(recvs[i]);
      return make_error(was_cancelled ? ErrorCode::cancelled : ErrorCode::timeout, "in-process rank ", dst, ": ",
                        was_cancelled ? "cancelled" : "deadline passed", " after ", waited.count(), " ms with ",
                        remaining, " of ", recvs.size(), " receives still waiting (", missing, ")");
    }
    // Wakes at least every 20 ms to notice a cancel.
    const auto slice = std::min(deadline, std::chrono::steady_clock::now() + std::chrono::milliseconds(20));
    arrived_[size_t(dst)]->wait_until(lock, slice);
    was_cancelled = cancelled();
    timed_out = was_cancelled || std::chrono::steady_clock::now() >= deadline;
  }
  return first;
}

}  // namespace starmesh
