#include "login_limiter.hpp"

#include <algorithm>

namespace starmesh::api {

LoginLimiter::Clock::time_point LoginLimiter::failure_slot(const std::string& peer, Clock::time_point now) {
  auto it = next_.find(peer);
  if (it == next_.end()) {
    if (next_.size() >= o_.max_peers)  // forget peers whose answers are all given
      std::erase_if(next_, [&](const auto& kv) { return kv.second <= now; });
    const bool full = next_.size() >= o_.max_peers;
    it = next_.try_emplace(full ? std::string(kOverflowPeer) : peer, now).first;
  }
  it->second = std::max(it->second, now) + o_.spacing;
  return it->second;
}

}  // namespace starmesh::api
