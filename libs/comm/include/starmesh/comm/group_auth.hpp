#pragma once
// One rank's side of a group's authenticated messages (message_auth.hpp has the format): it
// numbers what it sends to each peer and remembers what it took from each. The UCX transport
// seals every send and opens every receive with it; one exchange at a time.
#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "starmesh/comm/message_auth.hpp"

namespace starmesh {

// What a group's messages are authenticated under: the request driver's key for one attempt,
// and that attempt's id (bound into every MAC).
struct GroupKey {
  MessageKey key{};
  uint64_t session = 0;
};

using Trailer = std::array<uint8_t, kTrailerBytes>;

class GroupAuth {
 public:
  static Expected<GroupAuth> create(const GroupKey& key, int rank, int size);

  struct Send {
    int peer = 0;
    uint64_t tag = 0;
    std::span<const uint8_t> payload;
  };
  // The trailers of a batch's sends, in order, each with the next sequence number to its peer.
  // Sends of one payload (same bytes at the same address) are hashed once.
  Expected<std::vector<Trailer>> seal(std::span<const Send> sends);

  // A received message from `peer` under `tag`: ok, and its sequence number is taken; or
  // `unauthenticated` saying why (its MAC does not match, or its number was taken already or
  // is too old); `internal` if OpenSSL fails. Nothing is recorded for a message that fails.
  Status open(int peer, uint64_t tag, std::span<const uint8_t> payload, const Trailer& trailer);

 private:
  GroupAuth(MessageAuth auth, const GroupKey& key, int rank, int size);
  MessageAuth auth_;
  uint64_t session_;
  uint32_t rank_;
  std::vector<uint64_t> sent_;                        // per peer: the last number sent to it
  std::vector<std::unique_ptr<ReplayWindow>> taken_;  // per peer, made at its first message
};

}  // namespace starmesh
