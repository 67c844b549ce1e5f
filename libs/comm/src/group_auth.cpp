#include "starmesh/comm/group_auth.hpp"

#include <cstring>
#include <utility>

namespace starmesh {

Expected<GroupAuth> GroupAuth::create(const GroupKey& key, int rank, int size) {
  if (size < 1 || rank < 0 || rank >= size) return make_error("GroupAuth: rank ", rank, " is not in a group of ", size);
  SM_ASSIGN(auth, MessageAuth::create(key.key, key.session, uint32_t(rank)));
  return GroupAuth(std::move(auth), size);
}

Expected<std::vector<Trailer>> GroupAuth::seal(std::span<const Send> sends) {
  for (const Send& s : sends)
    if (s.peer < 0 || size_t(s.peer) >= taken_.size())
      return make_error("GroupAuth: peer ", s.peer, " is not in a group of ", taken_.size());
  std::vector<Trailer> out(sends.size());
  for (size_t i = 0; i < sends.size(); ++i) {
    const Send& s = sends[i];
    SM_ASSIGN(sealed, auth_.seal(s.payload, uint32_t(s.peer), s.tag));
    for (int b = 0; b < 8; ++b) out[i][size_t(b)] = uint8_t(sealed.seq >> (8 * b));
    std::memcpy(out[i].data() + 8, sealed.mac.data(), sealed.mac.size());
  }
  return out;
}

Status GroupAuth::open(int peer, uint64_t tag, std::span<const uint8_t> payload, const Trailer& trailer) {
  if (peer < 0 || size_t(peer) >= taken_.size())
    return make_error("GroupAuth: peer ", peer, " is not in a group of ", taken_.size());
  uint64_t seq = 0;
  for (int b = 0; b < 8; ++b) seq |= uint64_t(trailer[size_t(b)]) << (8 * b);
  auto& window = taken_[size_t(peer)];
  if (!window) window = std::make_unique<ReplayWindow>();
  // Checked before the MAC (cheap), recorded after it (a forgery must not move the window).
  if (!window->fresh(seq))
    return make_error(ErrorCode::unauthenticated, "its sequence number ", seq,
                      " was taken already or is too old (a replay)");
  SM_TRY(auth_.open(payload, uint32_t(peer), tag, seq, std::span<const uint8_t>(trailer).subspan(8)));
  window->accept(seq);
  return {};
}

}  // namespace starmesh
