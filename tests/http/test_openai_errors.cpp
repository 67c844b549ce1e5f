// Error codes to HTTP statuses and OpenAI error bodies; Bearer tokens and the slowing of
// guesses per address.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "starmesh/http/bearer_auth.hpp"
#include "starmesh/http/openai_errors.hpp"

using namespace starmesh;
using namespace starmesh::http;

TEST_CASE("every error code has its HTTP status and OpenAI type") {
  CHECK(http_status(ErrorCode::invalid_argument) == 400);
  CHECK(http_status(ErrorCode::refused) == 400);
  CHECK(http_status(ErrorCode::unauthenticated) == 401);
  CHECK(http_status(ErrorCode::not_found) == 404);
  CHECK(http_status(ErrorCode::overloaded) == 429);
  CHECK(http_status(ErrorCode::cancelled) == 499);
  CHECK(http_status(ErrorCode::internal) == 500);
  CHECK(http_status(ErrorCode::unavailable) == 503);
  CHECK(http_status(ErrorCode::timeout) == 504);
  CHECK(error_type(ErrorCode::invalid_argument) == "invalid_request_error");
  CHECK(error_type(ErrorCode::unauthenticated) == "authentication_error");
  CHECK(error_type(ErrorCode::overloaded) == "rate_limit_error");
  CHECK(error_type(ErrorCode::unavailable) == "server_error");
  for (ErrorCode c : kAllErrorCodes) CHECK(http_status(c) >= 400);
}

TEST_CASE("an error body: message, type, param, and the code as every wire spells it") {
  auto body = nlohmann::json::parse(error_body(make_error(ErrorCode::overloaded, "busy"), "max_tokens"));
  CHECK(body["error"]["message"] == "busy");
  CHECK(body["error"]["type"] == "rate_limit_error");
  CHECK(body["error"]["param"] == "max_tokens");
  CHECK(body["error"]["code"] == "overloaded");
  auto no_param = nlohmann::json::parse(error_body(make_error(ErrorCode::internal, "bad \xff byte")));
  CHECK(no_param["error"]["param"].is_null());
}

TEST_CASE("Bearer headers: the scheme in any case, the token trimmed, anything else refused") {
  CHECK(bearer_token("Bearer abc") == "abc");
  CHECK(bearer_token("bearer   abc ") == "abc");
  CHECK_FALSE(bearer_token("Basic abc"));
  CHECK_FALSE(bearer_token("Bearer "));
  CHECK_FALSE(bearer_token(""));
}

TEST_CASE("Bearer auth: the token is the tenant, a wrong one is 401, a guesser gets 429 without a look") {
  BearerAuth auth({"tok-a", "tok-b"}, {std::chrono::milliseconds(100), 2, 16});
  const auto t0 = BearerAuth::Clock::now();
  CHECK(auth.check("1.2.3.4", "Bearer tok-b", t0).value() == "tok-b");
  CHECK(auth.check("1.2.3.4", "", t0).code() == ErrorCode::unauthenticated);
  CHECK(auth.check("1.2.3.4", "Bearer tok-c", t0).code() == ErrorCode::unauthenticated);
  CHECK(auth.check("1.2.3.4", "Bearer tok-", t0).code() == ErrorCode::unauthenticated);
  // Three failures at once: past the burst of 2, this address is slowed, right token or not.
  CHECK(auth.check("1.2.3.4", "Bearer tok-a", t0).code() == ErrorCode::overloaded);
  CHECK(auth.check("5.6.7.8", "Bearer tok-a", t0).value() == "tok-a");  // others are not
  // Once the failures are paid off (one per 100 ms), the address is heard again.
  CHECK(auth.check("1.2.3.4", "Bearer tok-a", t0 + std::chrono::milliseconds(150)).value() == "tok-a");
}

TEST_CASE("an open door takes anything, and the tenant is empty") {
  BearerAuth open({});
  CHECK(open.open());
  CHECK(open.check("x", "", BearerAuth::Clock::now()).value().empty());
  CHECK(open.check("x", "Bearer whatever", BearerAuth::Clock::now()).value().empty());
}
