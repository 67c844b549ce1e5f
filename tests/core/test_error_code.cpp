// Errors carry a code: spelled one way, kept through SM_TRY / SM_ASSIGN and with_prefix.
#include <doctest/doctest.h>

#include <set>

#include "starmesh/core/expected.hpp"

using namespace starmesh;

namespace {
Status refuse() { return make_error(ErrorCode::overloaded, "busy: ", 3, " waiting"); }
Status pass_on() {
  SM_TRY(refuse());
  return {};
}
Expected<int> value_or_timeout(bool ok) {
  if (!ok) return make_error(ErrorCode::timeout, "late");
  return 7;
}
Expected<int> assign_through(bool ok) {
  SM_ASSIGN(v, value_or_timeout(ok));
  return v + 1;
}
}  // namespace

TEST_CASE("every error code has its own spelling, which parses back") {
  std::set<std::string_view> names;
  for (ErrorCode c : kAllErrorCodes) {
    names.insert(to_string(c));
    CHECK(error_code_from_string(to_string(c)) == c);
  }
  CHECK(names.size() == std::size(kAllErrorCodes));
  CHECK(to_string(ErrorCode::invalid_argument) == "invalid_argument");
  CHECK_FALSE(error_code_from_string("Invalid_Argument"));
  CHECK(is_retriable(ErrorCode::overloaded));
  CHECK_FALSE(is_retriable(ErrorCode::invalid_argument));
}

TEST_CASE("codes survive SM_TRY, SM_ASSIGN and prefixes, and a plain make_error is internal") {
  const Status s = pass_on();
  CHECK(s.code() == ErrorCode::overloaded);
  CHECK(s.message() == "busy: 3 waiting");
  CHECK(assign_through(true).value() == 8);
  CHECK(assign_through(false).code() == ErrorCode::timeout);
  const Error e = with_prefix("worker 2: ", s.error());
  CHECK(e.code == ErrorCode::overloaded);
  CHECK(e.message == "worker 2: busy: 3 waiting");
  CHECK(with_code(e, ErrorCode::refused).code == ErrorCode::refused);
  CHECK(make_error("x").code == ErrorCode::internal);
  CHECK(Error{"y"}.code == ErrorCode::internal);
}
