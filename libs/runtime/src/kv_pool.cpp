#include "starmesh/runtime/kv_pool.hpp"

namespace starmesh {

Status KvPool::reserve(uint64_t request, int64_t tokens) {
  if (tokens < 0) return make_error("request ", request, " asks for a negative number of KV tokens (", tokens, ")");
  if (held_.count(request)) return make_error("request ", request, " already holds KV here");
  if (tokens > free())
    return make_error("request ", request, " needs ", tokens, " KV tokens here but only ", free(), " of ", capacity_,
                      " are free");
  held_[request] = tokens;
  used_ += tokens;
  return {};
}

int64_t KvPool::release(uint64_t request) {
  auto it = held_.find(request);
  if (it == held_.end()) return 0;
  const int64_t n = it->second;
  used_ -= n;
  held_.erase(it);
  return n;
}

}  // namespace starmesh
