#pragma once
// The UCX data plane (Debian's UCX 1.13: host memory only; TCP, shared memory, RDMA where
// present). One UcxContext per process owns the UCP context and worker; its address goes
// to the other ranks through the control plane (the actors), and connect() turns everyone's
// addresses into a group: one UcxTransport with an endpoint to every rank.
//
//   auto ctx = UcxContext::create({.transports = "shm"});       // once per process
//   send_to_everyone(ctx->local_address());                    // caller's business
//   auto group = ctx->connect(rank, size, all_addresses, key); // addresses[r]: rank r's
//   group.value()->exchange(...);
//
// Messages use the UCP tag API: the 64-bit UCP tag packs (group id: 20 bits, source rank:
// 12 bits, user tag: 32 bits) and receives match all 64, so groups sharing a worker never
// see each other's messages. Device tensors are an error: stage them through pinned host
// memory first. Every wait polls the worker (lowest latency), and after a while without
// events yields the CPU between polls, so more ranks than cores still make progress.
//
// A process keeps one endpoint per peer process for all its groups (made by the first group
// that needs it; replaced once UCX reports it failed): UCX pairs the endpoints of two workers
// in the order they were made, and endpoints made and closed per group broke rendezvous.
//
// UCX accepts any peer that knows a worker's address, and its tag matching cannot tell which
// endpoint a message came from: anyone may send under any group, rank and tag. So a group
// made with a GroupKey authenticates every message (group_auth.hpp): each carries a trailer
// (sequence number and AES-256-GCM tag), sent with its payload as one message (two iov entries,
// no copy), and a receive hands out nothing before its MAC verified. A message that fails
// is an `unauthenticated` error naming the rank it came under, its buffer is zeroed, and
// that rank is cut off in the group (as for a message far too large).
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "starmesh/comm/group_auth.hpp"
#include "starmesh/comm/transport.hpp"

namespace starmesh {

// A group id has 20 bits: the runtime uses a request's id modulo 2^20, so an id comes back
// only after a million requests (a message left queued for an old group would otherwise
// meet a new one under its id). A group has at most 4096 ranks (12 bits, kMaxHosts).
inline constexpr uint32_t kMaxUcxGroupId = (1u << 20) - 1;
inline constexpr int kMaxUcxRanks = 1 << 12;

struct UcxOptions {
  // "tcp": TCP sockets only; "shm": shared memory only (ranks on one machine); "auto": what
  // UCX picks (shared memory inside a machine, a network between machines).
  std::string transports = "auto";
  // The network devices UCX may use (UCX_NET_DEVICES): "lo" keeps every byte on loopback;
  // "all" lets UCX use every device; or a list such as "eth0,mlx5_0:1".
  std::string net_devices = "lo";
  // How long a wait polls the worker flat out after the last event before it yields the
  // CPU between polls. 0 (yield whenever a poll finds nothing) is right when ranks share
  // cores: two ranks on one core then take turns at once, where a spin of S makes every
  // round trip cost about 2 S, and pure spinning costs milliseconds. A rank with cores of
  // its own may spin (bench/comm_latency --spin-us measures both).
  std::chrono::microseconds spin_before_yield{0};
};

namespace detail {
struct UcxWorker;
}
class UcxTransport;

class UcxContext {
 public:
  static Expected<UcxContext> create(const UcxOptions& options = {});

  // This worker's address (an opaque blob of a few hundred bytes) for the other ranks.
  const std::vector<uint8_t>& local_address() const;
  // What UCX was told to use, e.g. "UCX_TLS=tcp,self UCX_NET_DEVICES=lo".
  std::string describe() const;

  // A group in which this process is `rank` of `size`; addresses[r] is rank r's
  // local_address() (this one's included). Every rank gives the same `key`: its messages
  // are authenticated under it; std::nullopt sends them bare (benchmarks that measure what
  // the MAC costs; the runtime always gives a key). A key (with its session) is for one
  // group: a second group under it would repeat GCM nonces (group_auth.hpp). `group` tells concurrent groups on one
  // context apart; at most one live group per id. Connections are made lazily by the first
  // message to a peer process, and kept for later groups.
  Expected<std::unique_ptr<UcxTransport>> connect(int rank, int size,
                                                  const std::vector<std::vector<uint8_t>>& addresses,
                                                  const std::optional<GroupKey>& key, uint32_t group = 0);

 private:
  explicit UcxContext(std::shared_ptr<detail::UcxWorker> worker) : worker_(std::move(worker)) {}
  std::shared_ptr<detail::UcxWorker> worker_;  // shared with the groups, which may outlive this handle
};

class UcxTransport final : public transport_i {
 public:
  ~UcxTransport() override;
  UcxTransport(const UcxTransport&) = delete;
  UcxTransport& operator=(const UcxTransport&) = delete;

  std::string name() const override { return "ucx"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  uint32_t group() const { return group_; }
  bool authenticated() const { return auth_ != nullptr; }

  // A receive that times out before its message arrives is cancelled and the group stays
  // usable. A transfer that cannot be cancelled (a send the peer never takes, a receive
  // whose data is on its way) is left to UCX (its buffers kept alive) and cuts that peer off
  // in this group: later transfers with it fail at once, naming why, and the group must be
  // rebuilt to talk to it again. The endpoint itself is the process's, shared by its groups,
  // and stays open. One exchange at a time (an authenticated group numbers its messages).
  Status exchange(std::span<const Transfer> transfers, Deadline deadline) override;

 private:
  friend class UcxContext;
  struct Peer;
  UcxTransport(std::shared_ptr<detail::UcxWorker> worker, int rank, int size, uint32_t group,
               std::unique_ptr<GroupAuth> auth);

  std::shared_ptr<detail::UcxWorker> worker_;
  int rank_, size_;
  uint32_t group_;
  std::unique_ptr<GroupAuth> auth_;           // null: bare messages
  std::vector<std::unique_ptr<Peer>> peers_;  // one per rank, self included

  Error refuse_forged(const Transfer& t, const Status& why);
};

}  // namespace starmesh
