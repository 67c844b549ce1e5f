#include "starmesh/model/jinja_operators.hpp"

#include <cmath>
#include <string>

#include "starmesh/model/jinja_builtins.hpp"

namespace starmesh::jinja {
namespace {

Error type_error(std::string_view what) { return make_error(ErrorCode::invalid_argument, "chat template: ", what); }

Error unsupported(std::string_view op, const Value& a, const Value& b) {
  return type_error("unsupported operand types for " + std::string(op) + ": '" + std::string(type_name(a)) + "' and '" +
                    std::string(type_name(b)) + "'");
}

Error overflow() { return type_error("integer overflow (templates get 64-bit integers)"); }

bool is_int(const Value& v) { return v.is(Value::Kind::integer) || v.is(Value::Kind::boolean); }

// CPython's float_divmod: the floored quotient and the remainder with the divisor's sign.
void float_divmod(double x, double y, double& floordiv, double& mod) {
  mod = std::fmod(x, y);
  double div = (x - mod) / y;
  if (mod != 0) {
    if ((y < 0) != (mod < 0)) {
      mod += y;
      div -= 1.0;
    }
  } else {
    mod = std::copysign(0.0, y);
  }
  if (div != 0) {
    floordiv = std::floor(div);
    if (div - floordiv > 0.5) floordiv += 1.0;
  } else {
    floordiv = std::copysign(0.0, x / y);
  }
}

Expected<Value> int_pow(int64_t base, int64_t exponent) {
  if (exponent < 0) {
    if (base == 0) return type_error("0.0 cannot be raised to a negative power");
    return Value::floating(std::pow(double(base), double(exponent)));
  }
  int64_t result = 1;
  while (exponent > 0) {
    if (exponent & 1)
      if (__builtin_mul_overflow(result, base, &result)) return overflow();
    exponent >>= 1;
    if (exponent > 0 && __builtin_mul_overflow(base, base, &base)) return overflow();
  }
  return Value::integer(result);
}

// str * n or list * n, refused before it is built if it would pass the bounds.
Expected<Value> repeat(const Value& seq, int64_t times, Budget& budget) {
  const Limits& limits = budget.limits();
  if (times <= 0) return seq.is_string() ? Value::string("") : Value::list({}, seq.as_list().tuple);
  if (seq.is_string()) {
    const std::string& s = seq.as_string();
    if (!s.empty() && uint64_t(times) > limits.max_output_bytes / s.size())
      return check_string_size(limits.max_output_bytes + 1, limits).error();
    SM_TRY(budget.charge(uint64_t(times) * s.size() / 64 + 1));
    std::string out;
    out.reserve(s.size() * size_t(times));
    for (int64_t i = 0; i < times; ++i) out += s;
    return Value::string(std::move(out));
  }
  const auto& items = seq.as_list().items;
  if (!items.empty() && uint64_t(times) > limits.max_items / items.size())
    return check_items(limits.max_items + 1, limits).error();
  SM_TRY(budget.charge(uint64_t(times) * items.size() + 1));
  std::vector<Value> out;
  for (int64_t i = 0; i < times; ++i) out.insert(out.end(), items.begin(), items.end());
  return Value::list(std::move(out), seq.as_list().tuple);
}

Expected<Value> add(const Value& a, const Value& b, Budget& budget) {
  if (a.is_string() && b.is_string()) {
    SM_TRY(check_string_size(a.as_string().size() + b.as_string().size(), budget.limits()));
    return Value::string(a.as_string() + b.as_string());
  }
  if (a.is_list() && b.is_list() && a.as_list().tuple == b.as_list().tuple) {
    SM_TRY(check_items(a.as_list().items.size() + b.as_list().items.size(), budget.limits()));
    SM_TRY(budget.charge(a.as_list().items.size() + b.as_list().items.size()));
    std::vector<Value> out = a.as_list().items;
    out.insert(out.end(), b.as_list().items.begin(), b.as_list().items.end());
    return Value::list(std::move(out), a.as_list().tuple);
  }
  return unsupported("+", a, b);
}

}  // namespace

Expected<Value> binary_op(BinaryOp op, const Value& a, const Value& b, Budget& budget) {
  if (a.is_undefined()) return undefined_error(a);
  if (b.is_undefined()) return undefined_error(b);
  const bool numbers = a.is_number() && b.is_number();
  const bool ints = numbers && is_int(a) && is_int(b);
  int64_t r = 0;
  switch (op) {
    case BinaryOp::add:
      if (!numbers) return add(a, b, budget);
      if (!ints) return Value::floating(a.as_float() + b.as_float());
      if (__builtin_add_overflow(a.as_int(), b.as_int(), &r)) return overflow();
      return Value::integer(r);
    case BinaryOp::sub:
      if (!numbers) return unsupported("-", a, b);
      if (!ints) return Value::floating(a.as_float() - b.as_float());
      if (__builtin_sub_overflow(a.as_int(), b.as_int(), &r)) return overflow();
      return Value::integer(r);
    case BinaryOp::mul:
      if ((a.is_string() || a.is_list()) && is_int(b)) return repeat(a, b.as_int(), budget);
      if (is_int(a) && (b.is_string() || b.is_list())) return repeat(b, a.as_int(), budget);
      if (!numbers) return unsupported("*", a, b);
      if (!ints) return Value::floating(a.as_float() * b.as_float());
      if (__builtin_mul_overflow(a.as_int(), b.as_int(), &r)) return overflow();
      return Value::integer(r);
    case BinaryOp::div:
      if (!numbers) return unsupported("/", a, b);
      if (b.as_float() == 0) return type_error("division by zero");
      return Value::floating(a.as_float() / b.as_float());
    case BinaryOp::floordiv:
    case BinaryOp::mod: {
      if (a.is_string() && op == BinaryOp::mod) return type_error("'%' string formatting is not supported");
      if (!numbers) return unsupported(op == BinaryOp::mod ? "%" : "//", a, b);
      if (ints) {
        const int64_t x = a.as_int(), y = b.as_int();
        if (y == 0) return type_error("integer division or modulo by zero");
        if (x == INT64_MIN && y == -1) return op == BinaryOp::mod ? Value::integer(0) : Expected<Value>(overflow());
        int64_t q = x / y, m = x % y;
        if (m != 0 && ((m < 0) != (y < 0))) --q, m += y;
        return Value::integer(op == BinaryOp::mod ? m : q);
      }
      if (b.as_float() == 0) return type_error("float division or modulo by zero");
      double floordiv = 0, mod = 0;
      float_divmod(a.as_float(), b.as_float(), floordiv, mod);
      return Value::floating(op == BinaryOp::mod ? mod : floordiv);
    }
    case BinaryOp::pow: {
      if (!numbers) return unsupported("**", a, b);
      if (ints) return int_pow(a.as_int(), b.as_int());
      const double x = a.as_float(), y = b.as_float();
      if (x == 0 && y < 0) return type_error("0.0 cannot be raised to a negative power");
      if (x < 0 && y != std::trunc(y)) return type_error("a negative number to a fractional power is complex");
      return Value::floating(std::pow(x, y));
    }
  }
  return type_error("unknown operator");
}

Expected<Value> unary_op(bool minus, const Value& v) {
  if (v.is_undefined()) return undefined_error(v);
  if (!v.is_number())
    return type_error(std::string("bad operand type for unary ") + (minus ? "-" : "+") + ": '" +
                      std::string(type_name(v)) + "'");
  if (v.is(Value::Kind::floating)) return Value::floating(minus ? -v.as_float() : v.as_float());
  if (minus && v.as_int() == INT64_MIN) return overflow();
  return Value::integer(minus ? -v.as_int() : v.as_int());
}

}  // namespace starmesh::jinja
