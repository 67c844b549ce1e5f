#include "starmesh/runtime/kept_context_policy.hpp"

namespace starmesh {

KeptContextFate decide_kept_context(const KeptContextCase& c) {
  const bool wait = c.event == WorkerEvent::leaving && c.users > 0;  // they finish on the leaving worker
  const bool bounded = c.tokens <= c.max_stale_tokens - c.stale_tokens;
  if (!c.has_tokens || c.drop_asked || !bounded) return wait ? KeptContextFate::drop_when_idle : KeptContextFate::drop;
  return wait ? KeptContextFate::reencode_when_idle : KeptContextFate::reencode;
}

}  // namespace starmesh
