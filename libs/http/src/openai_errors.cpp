#include "starmesh/http/openai_errors.hpp"

#include <nlohmann/json.hpp>

namespace starmesh::http {

int http_status(ErrorCode code) {
  switch (code) {
    case ErrorCode::invalid_argument:
    case ErrorCode::refused:  // too large for this mesh: a 429 would invite retries that cannot succeed
      return 400;
    case ErrorCode::unauthenticated:
      return 401;
    case ErrorCode::not_found:
      return 404;
    case ErrorCode::overloaded:
      return 429;
    case ErrorCode::cancelled:
      return 499;  // the client closed the request (nginx's convention): rarely seen by anyone
    case ErrorCode::unavailable:
      return 503;
    case ErrorCode::timeout:
      return 504;
    case ErrorCode::internal:
      return 500;
  }
  return 500;
}

std::string_view error_type(ErrorCode code) {
  switch (http_status(code)) {
    case 400:
    case 404:
      return "invalid_request_error";
    case 401:
      return "authentication_error";
    case 429:
      return "rate_limit_error";
    case 499:
      return "cancelled";
    default:
      return "server_error";
  }
}

std::string error_body(const Error& error, std::string_view param) {
  nlohmann::json e = {{"message", error.message},
                      {"type", error_type(error.code)},
                      {"param", param.empty() ? nlohmann::json() : nlohmann::json(param)},
                      {"code", to_string(error.code)}};
  // Messages may quote client bytes: replace invalid UTF-8 rather than fail to answer.
  return nlohmann::json{{"error", std::move(e)}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace starmesh::http
