#pragma once
// Errors as values: Status (ok or an error) and Expected<T> (a value or an error).
// C++20 has no std::expected; this is the small part of it we need.
#include <cassert>
#include <string>
#include <utility>
#include <variant>

#include "starmesh/core/error_code.hpp"

namespace starmesh {

// What went wrong: a code programs branch on, and words a user can act on.
struct Error {
  std::string message;
  ErrorCode code = ErrorCode::internal;
};

class Status {
 public:
  Status() = default;
  Status(Error e) : error_(std::move(e)), ok_(false) {}  // NOLINT: implicit on purpose
  static Status ok() { return {}; }
  bool is_ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const std::string& message() const { return error_.message; }
  ErrorCode code() const { return error_.code; }
  const Error& error() const { return error_; }

 private:
  Error error_;
  bool ok_ = true;
};

template <class T>
class Expected {
 public:
  Expected(T value) : v_(std::move(value)) {}  // NOLINT: implicit on purpose
  Expected(Error e) : v_(std::move(e)) {}      // NOLINT
  bool has_value() const { return v_.index() == 0; }
  explicit operator bool() const { return has_value(); }
  T& value() & {
    assert(has_value());
    return std::get<0>(v_);
  }
  const T& value() const& {
    assert(has_value());
    return std::get<0>(v_);
  }
  T&& value() && {
    assert(has_value());
    return std::get<0>(std::move(v_));
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const Error& error() const {
    assert(!has_value());
    return std::get<1>(v_);
  }
  Status status() const { return has_value() ? Status{} : Status{error()}; }
  ErrorCode code() const { return error().code; }

 private:
  std::variant<T, Error> v_;
};

namespace detail {
template <class... Parts>
std::string concat(Parts&&... parts) {
  std::string s;
  ((s +=
    [](auto&& p) {
      if constexpr (std::is_convertible_v<decltype(p), std::string_view>)
        return std::string(p);
      else
        return std::to_string(p);
    }(std::forward<Parts>(parts))),
   ...);
  return s;
}
}  // namespace detail

// Builds an Error from pieces streamed together: make_error("bad shape ", 3, "x", 4) (code
// internal), or make_error(ErrorCode::invalid_argument, "bad shape ", 3).
template <class... Parts>
Error make_error(Parts&&... parts) {
  return Error{detail::concat(std::forward<Parts>(parts)...)};
}
template <class... Parts>
Error make_error(ErrorCode code, Parts&&... parts) {
  return Error{detail::concat(std::forward<Parts>(parts)...), code};
}

// The same error under another code (an edge that knows what kind of failure it is), and the
// same code with a prefix to the message (context for people).
inline Error with_code(Error e, ErrorCode code) {
  e.code = code;
  return e;
}
inline Error with_prefix(const std::string& prefix, Error e) {
  e.message = prefix + e.message;
  return e;
}

}  // namespace starmesh

// Propagates an error from an expression returning Status.
#define SM_TRY(expr)                            \
  do {                                          \
    ::starmesh::Status sm_status_ = (expr);     \
    if (!sm_status_) return sm_status_.error(); \
  } while (0)

// Binds `var` to the value of an Expected expression, or returns its error.
#define SM_ASSIGN(var, expr)                            \
  auto var##_expected_ = (expr);                        \
  if (!var##_expected_) return var##_expected_.error(); \
  auto var = std::move(var##_expected_).value()
