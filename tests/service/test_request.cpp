// The service contract's closed sets: spellings and round trips.
#include <doctest/doctest.h>

#include "starmesh/service/request.hpp"

using namespace starmesh;

TEST_CASE("attention modes and stop reasons spell as the wire and the CLI do, and parse back") {
  for (AttentionMode m : {AttentionMode::star, AttentionMode::global})
    CHECK(attention_mode_from_string(to_string(m)) == m);
  CHECK(to_string(AttentionMode::global) == "global");
  CHECK_FALSE(attention_mode_from_string("ring"));
  for (StopReason r : {StopReason::eos, StopReason::max_tokens, StopReason::cancelled})
    CHECK(stop_reason_from_string(to_string(r)) == r);
  CHECK(to_string(StopReason::max_tokens) == "max_tokens");
  CHECK_FALSE(stop_reason_from_string("done"));
}
