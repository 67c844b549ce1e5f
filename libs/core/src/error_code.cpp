#include "starmesh/core/error_code.hpp"

namespace starmesh {

std::string_view to_string(ErrorCode code) {
  switch (code) {
    case ErrorCode::internal:
      return "internal";
    case ErrorCode::invalid_argument:
      return "invalid_argument";
    case ErrorCode::not_found:
      return "not_found";
    case ErrorCode::refused:
      return "refused";
    case ErrorCode::overloaded:
      return "overloaded";
    case ErrorCode::timeout:
      return "timeout";
    case ErrorCode::cancelled:
      return "cancelled";
    case ErrorCode::unavailable:
      return "unavailable";
    case ErrorCode::unauthenticated:
      return "unauthenticated";
  }
  return "internal";
}

std::optional<ErrorCode> error_code_from_string(std::string_view text) {
  for (ErrorCode c : kAllErrorCodes)
    if (to_string(c) == text) return c;
  return std::nullopt;
}

}  // namespace starmesh
