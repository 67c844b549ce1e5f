#pragma once
// Errors as values: Status (ok or a message) and Expected<T> (a value or an error).
// C++20 has no std::expected; this is the small part of it we need.
#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace starmesh {

// What went wrong, in words a user can act on.
struct Error {
  std::string message;
};

class Status {
 public:
  Status() = default;
  Status(Error e) : error_(std::move(e.message)), ok_(false) {}  // NOLINT: implicit on purpose
  static Status ok() { return {}; }
  bool is_ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const std::string& message() const { return error_; }

 private:
  std::string error_;
  bool ok_ = true;
};

template <class T>
class Expected {
 public:
  Expected(T value) : v_(std::move(value)) {}  // NOLINT: implicit on purpose
  Expected(Error e) : v_(std::move(e)) {}      // NOLINT
  bool has_value() const { return v_.index() == 0; }
  explicit operator bool() const { return has_value(); }
  T& value() & { assert(has_value()); return std::get<0>(v_); }
  const T& value() const& { assert(has_value()); return std::get<0>(v_); }
  T&& value() && { assert(has_value()); return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const Error& error() const { assert(!has_value()); return std::get<1>(v_); }
  Status status() const { return has_value() ? Status{} : Status{error()}; }

 private:
  std::variant<T, Error> v_;
};

// Builds an Error from pieces streamed together: make_error("bad shape ", 3, "x", 4).
template <class... Parts>
Error make_error(Parts&&... parts) {
  std::string s;
  ((s += [](auto&& p) {
     if constexpr (std::is_convertible_v<decltype(p), std::string_view>) return std::string(p);
     else return std::to_string(p);
   }(std::forward<Parts>(parts))), ...);
  return Error{std::move(s)};
}

}  // namespace starmesh

// Propagates an error from an expression returning Status.
#define SM_TRY(expr)                                      \
  do {                                                    \
    ::starmesh::Status sm_status_ = (expr);               \
    if (!sm_status_) return ::starmesh::Error{sm_status_.message()}; \
  } while (0)

// Binds `var` to the value of an Expected expression, or returns its error.
#define SM_ASSIGN(var, expr)                               \
  auto var##_expected_ = (expr);                           \
  if (!var##_expected_) return var##_expected_.error();    \
  auto var = std::move(var##_expected_).value()
