#pragma once
// What kind of failure an error is: the closed set programs branch on (retry, refuse, tell the
// user). The message beside it is for people; never branch on its text.
#include <cstdint>
#include <optional>
#include <string_view>

namespace starmesh {

enum class ErrorCode : uint8_t {
  internal = 0,      // a bug or an unexpected failure: nothing the caller can change
  invalid_argument,  // the request (or a flag, or a file) is wrong: fix it, do not retry as is
  not_found,         // what it names does not exist (any more): e.g. a dropped kept context
  refused,           // valid, but this mesh can never serve it (too large for every worker)
  overloaded,        // valid and servable, but not now: retry later
  timeout,           // a deadline passed (a worker or the queue did not answer in time)
  cancelled,         // the caller (or a freed request) stopped it
  unavailable,       // a peer went away or cannot be reached: retry may succeed
  unauthenticated,   // no or wrong credentials
};

inline constexpr ErrorCode kAllErrorCodes[] = {
    ErrorCode::internal,  ErrorCode::invalid_argument, ErrorCode::not_found,
    ErrorCode::refused,   ErrorCode::overloaded,       ErrorCode::timeout,
    ErrorCode::cancelled, ErrorCode::unavailable,      ErrorCode::unauthenticated,
};

// "invalid_argument": the spelling used on every wire (Cap'n Proto, logs, metrics labels).
std::string_view to_string(ErrorCode code);
std::optional<ErrorCode> error_code_from_string(std::string_view text);

// Whether the same request may succeed later without change.
constexpr bool is_retriable(ErrorCode code) {
  return code == ErrorCode::overloaded || code == ErrorCode::timeout || code == ErrorCode::unavailable;
}

}  // namespace starmesh
