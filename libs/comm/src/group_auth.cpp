#include "starmesh/comm/group_auth.hpp"

#include <cstring>
#include <map>
#include <utility>

namespace starmesh {

GroupAuth::GroupAuth(MessageAuth auth, const GroupKey& key, int rank, int size)
    : auth_(std::move(auth)),
      session_(key.session),
      rank_(uint32_t(rank)),
      sent_(size_t(size), 0),
      taken_(size_t(size)) {}

Expected<GroupAuth> GroupAuth::create(const GroupKey& key, int rank, int size) {
  if (size < 1 || rank < 0 || rank >= size) return make_error("GroupAuth: rank ", rank, " is not in a group of ", size);
  SM_ASSIGN(auth, MessageAuth::create(key.key));
  return GroupAuth(std::move(auth), key, rank, size);
}

Expected<std::vector<Trailer>> GroupAuth::seal(std::span<const Send> sends) {
  for (const Send& s : sends)
    if (s.peer < 0 || size_t(s.peer) >= sent_.size())
      return make_error("GroupAuth: peer ", s.peer, " is not in a group of ", sent_.size());
  std::map<std::pair<const uint8_t*, size_t>, MessageAuth::Partial> hashed;
  std::vector<Trailer> out(sends.size());
  for (size_t i = 0; i < sends.size(); ++i) {
    const Send& s = sends[i];
    auto key = std::make_pair(s.payload.data(), s.payload.size());
    auto it = hashed.find(key);
    if (it == hashed.end()) {
      SM_ASSIGN(partial, auth_.begin(s.payload));
      it = hashed.emplace(key, std::move(partial)).first;
    }
    const uint64_t seq = ++sent_[size_t(s.peer)];
    SM_ASSIGN(mac, auth_.finish(it->second, {session_, rank_, uint32_t(s.peer), s.tag, seq, s.payload.size()}));
    for (int b = 0; b < 8; ++b) out[i][size_t(b)] = uint8_t(seq >> (8 * b));
    std::memcpy(out[i].data() + 8, mac.data(), mac.size());
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
  SM_TRY(auth_.verify(payload, {session_, uint32_t(peer), rank_, tag, seq, payload.size()},
                      std::span<const uint8_t>(trailer).subspan(8)));
  window->accept(seq);
  return {};
}

}  // namespace starmesh
