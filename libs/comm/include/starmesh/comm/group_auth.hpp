#pragma once
// One rank's side of a group's authenticated messages (message_auth.hpp has the format): it
// numbers everything it sends with one counter and remembers what it took from each peer.
// The UCX transport seals every send and opens every receive with it; one exchange at a time.
#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "starmesh/comm/message_auth.hpp"

namespace starmesh {

// What a group's messages are authenticated under: the request driver's key for one attempt,
// and that attempt's id (hashed into the GCM key and bound into every MAC). A (key, session)
// is one group's: each rank must make one GroupAuth under it, or its nonces repeat.
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
  // The trailers of a batch's sends, in order, each with this rank's next sequence number.
  // Each send is sealed on its own, a broadcast too (one payload to several peers: one seal
  // per receiver, each binding its receiver), so a copy taken off the wire to one receiver is
  // refused by every other; a broadcast costs one GHASH pass over the payload per receiver.
  Expected<std::vector<Trailer>> seal(std::span<const Send> sends);

  // A received message from `peer` under `tag`: ok, and its sequence number is taken; or
  // `unauthenticated` saying why (its MAC does not match, or its number was taken already or
  // is too old); `internal` if OpenSSL fails. Nothing is recorded for a message that fails.
  Status open(int peer, uint64_t tag, std::span<const uint8_t> payload, const Trailer& trailer);

  uint64_t sealed() const { return auth_.sealed(); }

 private:
  GroupAuth(MessageAuth auth, int size) : auth_(std::move(auth)), taken_(size_t(size)) {}
  MessageAuth auth_;
  std::vector<std::unique_ptr<ReplayWindow>> taken_;  // per peer, made at its first message
};

}  // namespace starmesh
