#include "starmesh/model/jinja_eval.hpp"

#include "starmesh/model/jinja_builtins.hpp"
#include "starmesh/model/jinja_format.hpp"
#include "starmesh/model/jinja_operators.hpp"

namespace starmesh::jinja {
namespace {

using Frame = std::vector<std::pair<std::string, Value>>;

// Text costs one step per this many bytes (Limits::max_steps counts nodes, turns, items and text).
constexpr size_t kBytesPerStep = 256;

void set_in(Frame& frame, const std::string& name, Value v) {
  for (auto& [key, value] : frame)
    if (key == name) {
      value = std::move(v);
      return;
    }
  frame.emplace_back(name, std::move(v));
}

class Evaluator {
 public:
  Evaluator(const Limits& limits, Frame variables) : limits_(limits), budget_(limits) {
    frames_.push_back(std::move(variables));
    frames_.emplace_back();  // the template's own top-level sets
  }

  Status run(const std::vector<Stmt>& program, std::string& out) {
    out_ = &out;
    auto flow = exec(program);
    return flow ? Status::ok() : Status(flow.error());
  }

 private:
  enum class Flow { next, break_loop, continue_loop };

  // A frame pushed for the lifetime of this object (one for-loop turn).
  class FrameScope {
   public:
    FrameScope(Evaluator& e, Frame frame) : e_(e) { e_.frames_.push_back(std::move(frame)); }
    ~FrameScope() { e_.frames_.pop_back(); }

   private:
    Evaluator& e_;
  };

  Error at_line(int line, Error e) const {
    const std::string prefix = "chat template: ";
    if (e.message.rfind(prefix, 0) == 0)
      e.message = "chat template line " + std::to_string(line) + ": " + e.message.substr(prefix.size());
    return e;
  }

  const Value* lookup(const std::string& name) const {
    for (auto frame = frames_.rbegin(); frame != frames_.rend(); ++frame)
      for (const auto& [key, value] : *frame)
        if (key == name) return &value;
    return nullptr;
  }

  Status emit(std::string_view text) {
    if (out_->size() + text.size() > limits_.max_output_bytes)
      return make_error(ErrorCode::invalid_argument, "chat template: the rendering passes ", limits_.max_output_bytes,
                        " bytes (the max_output_bytes bound)");
    out_->append(text);
    return Status::ok();
  }

  // ---- statements ----

  Expected<Flow> exec(const std::vector<Stmt>& body) {
    for (const Stmt& s : body) {
      SM_TRY(budget_.charge(1));
      auto flow = exec_one(s);
      if (!flow) return at_line(s.line, flow.error());
      if (*flow != Flow::next) return *flow;
    }
    return Flow::next;
  }

  Expected<Flow> exec_one(const Stmt& s) {
    switch (s.kind) {
      case StmtKind::text:
        SM_TRY(emit(s.text));
        return Flow::next;
      case StmtKind::print: {
        SM_ASSIGN(v, eval(*s.expr));
        SM_ASSIGN(text, to_str(v, limits_.max_output_bytes));
        SM_TRY(emit(text));
        return Flow::next;
      }
      case StmtKind::if_chain:
        for (const Branch& b : s.branches) {
          SM_ASSIGN(condition, eval(*b.condition));
          if (truthy(condition)) return exec(b.body);
        }
        return exec(s.else_body);
      case StmtKind::for_loop:
        return exec_for(s);
      case StmtKind::set: {
        SM_ASSIGN(v, eval(*s.expr));
        SM_TRY(assign(s, std::move(v)));
        return Flow::next;
      }
      case StmtKind::set_block: {
        std::string captured;
        std::string* outer = out_;
        out_ = &captured;
        auto flow = exec(s.body);
        out_ = outer;
        if (!flow) return flow.error();
        SM_TRY(assign(s, Value::string(std::move(captured))));
        return Flow::next;
      }
      case StmtKind::loop_break:
        return Flow::break_loop;
      case StmtKind::loop_continue:
        return Flow::continue_loop;
    }
    return make_error(ErrorCode::internal, "chat template: unknown statement");
  }

  Status assign(const Stmt& s, Value v) {
    if (s.attribute.empty()) {
      set_in(frames_.back(), s.targets[0], std::move(v));
      return Status::ok();
    }
    const Value* target = lookup(s.targets[0]);
    if (!target || !target->is(Value::Kind::ns))
      return make_error(ErrorCode::invalid_argument, "chat template: cannot assign attribute '", s.attribute, "' on '",
                        s.targets[0], "': it is not a namespace()");
    set_in(target->as_ns().attrs, s.attribute, std::move(v));
    return Status::ok();
  }

  Expected<Frame> bind_targets(const std::vector<std::string>& targets, const Value& item) {
    Frame frame;
    if (targets.size() == 1) {
      frame.emplace_back(targets[0], item);
      return frame;
    }
    if (!item.is_list() || item.as_list().items.size() != targets.size())
      return make_error(ErrorCode::invalid_argument, "chat template: cannot unpack a ", type_name(item), " into ",
                        targets.size(), " loop variables");
    for (size_t i = 0; i < targets.size(); ++i) frame.emplace_back(targets[i], item.as_list().items[i]);
    return frame;
  }

  Expected<Flow> exec_for(const Stmt& s) {
    SM_ASSIGN(iterable, eval(*s.expr));
    SM_ASSIGN(all, iterate(iterable, budget_));
    std::vector<Value> items;
    if (!s.condition) {
      items = std::move(all);
    } else {  // `for x in xs if cond`: loop.index counts the kept items only
      for (Value& item : all) {
        SM_ASSIGN(frame, bind_targets(s.targets, item));
        FrameScope scope(*this, std::move(frame));
        SM_ASSIGN(keep, eval(*s.condition));
        if (truthy(keep)) items.push_back(std::move(item));
      }
    }
    if (items.empty()) {
      FrameScope scope(*this, {});
      SM_ASSIGN(flow, exec(s.else_body));
      (void)flow;  // break/continue in a loop's else belong to an outer loop, which jinja2 refuses
      return Flow::next;
    }
    const int64_t n = int64_t(items.size());
    for (int64_t i = 0; i < n; ++i) {
      SM_TRY(budget_.charge(1));
      SM_ASSIGN(frame, bind_targets(s.targets, items[size_t(i)]));
      std::vector<std::pair<std::string, Value>> loop = {
          {"index", Value::integer(i + 1)},    {"index0", Value::integer(i)},
          {"revindex", Value::integer(n - i)}, {"revindex0", Value::integer(n - i - 1)},
          {"first", Value::boolean(i == 0)},   {"last", Value::boolean(i == n - 1)},
          {"length", Value::integer(n)},       {"depth", Value::integer(1)},
          {"depth0", Value::integer(0)},
      };
      if (i > 0) loop.emplace_back("previtem", items[size_t(i - 1)]);
      if (i + 1 < n) loop.emplace_back("nextitem", items[size_t(i + 1)]);
      frame.emplace_back("loop", Value::dict(std::move(loop)));
      FrameScope scope(*this, std::move(frame));
      SM_ASSIGN(flow, exec(s.body));
      if (flow == Flow::break_loop) break;
    }
    return Flow::next;
  }

  // ---- expressions ----

  Status check_depth(const Value& v) const {
    if (v.depth() > limits_.max_depth)
      return make_error(ErrorCode::invalid_argument, "chat template: lists and dicts nest deeper than ",
                        limits_.max_depth, " (the max_depth bound)");
    return Status::ok();
  }

  Expected<CallArgs> eval_args(const Expr& e) {
    CallArgs args;
    for (size_t i = 1; i < e.children.size(); ++i) {
      SM_ASSIGN(v, eval(*e.children[i]));
      args.positional.push_back(std::move(v));
    }
    for (const Keyword& k : e.keywords) {
      SM_ASSIGN(v, eval(*k.value));
      args.keywords.emplace_back(k.name, std::move(v));
    }
    return args;
  }

  Expected<Value> eval_optional(const ExprPtr& e) {
    if (!e) return Value::none();
    return eval(*e);
  }

  // Every value an expression makes: its nesting bounded, its text paid for (copying and
  // scanning strings is the work that grows with the conversation).
  Expected<Value> eval(const Expr& e) {
    SM_TRY(budget_.charge(1));
    SM_ASSIGN(v, eval_node(e));
    SM_TRY(check_depth(v));
    if (v.is_string()) SM_TRY(charge_text(v));
    return v;
  }

  Status charge_text(const Value& v) {
    return v.is_string() ? budget_.charge(v.as_string().size() / kBytesPerStep) : Status::ok();
  }

  Expected<Value> eval_node(const Expr& e) {
    switch (e.kind) {
      case ExprKind::literal:
        return e.value;
      case ExprKind::name:
        if (const Value* v = lookup(e.name)) return *v;
        return Value::undefined(e.name);
      case ExprKind::list:
      case ExprKind::tuple: {
        std::vector<Value> items;
        for (const ExprPtr& c : e.children) {
          SM_ASSIGN(v, eval(*c));
          items.push_back(std::move(v));
        }
        Value list = Value::list(std::move(items), e.kind == ExprKind::tuple);
        SM_TRY(check_depth(list));
        return list;
      }
      case ExprKind::dict: {
        std::vector<std::pair<std::string, Value>> items;
        for (size_t i = 0; i + 1 < e.children.size(); i += 2) {
          SM_ASSIGN(key, eval(*e.children[i]));
          if (!key.is_string())
            return make_error(ErrorCode::invalid_argument, "chat template: dict keys must be strings here, got ",
                              type_name(key));
          SM_ASSIGN(value, eval(*e.children[i + 1]));
          set_in(items, key.as_string(), std::move(value));
        }
        Value dict = Value::dict(std::move(items));
        SM_TRY(check_depth(dict));
        return dict;
      }
      case ExprKind::attribute: {
        SM_ASSIGN(obj, eval(*e.children[0]));
        return get_attribute(obj, e.name);
      }
      case ExprKind::item: {
        SM_ASSIGN(obj, eval(*e.children[0]));
        SM_ASSIGN(key, eval(*e.children[1]));
        SM_TRY(charge_text(obj));  // s[i] walks s to the i-th character
        return get_item(obj, key);
      }
      case ExprKind::slice: {
        SM_ASSIGN(obj, eval(*e.children[0]));
        SM_TRY(charge_text(obj));
        SM_ASSIGN(start, eval_optional(e.children[1]));
        SM_ASSIGN(stop, eval_optional(e.children[2]));
        SM_ASSIGN(step, eval_optional(e.children[3]));
        return get_slice(obj, start, stop, step);
      }
      case ExprKind::call: {
        SM_ASSIGN(callee, eval(*e.children[0]));
        SM_ASSIGN(args, eval_args(e));
        if (callee.is(Value::Kind::function)) return callee.as_function().call(args, budget_);
        if (callee.is_undefined()) return undefined_error(callee);
        return make_error(ErrorCode::invalid_argument, "chat template: '", type_name(callee),
                          "' object is not callable");
      }
      case ExprKind::filter: {
        SM_ASSIGN(input, eval(*e.children[0]));
        SM_ASSIGN(args, eval_args(e));
        return apply_filter(e.name, input, args, budget_);
      }
      case ExprKind::test: {
        SM_ASSIGN(input, eval(*e.children[0]));
        SM_ASSIGN(args, eval_args(e));
        SM_ASSIGN(passed, apply_test(e.name, input, args, budget_));
        return Value::boolean(passed);
      }
      case ExprKind::negate: {
        SM_ASSIGN(v, eval(*e.children[0]));
        return Value::boolean(!truthy(v));
      }
      case ExprKind::minus:
      case ExprKind::plus: {
        SM_ASSIGN(v, eval(*e.children[0]));
        return unary_op(e.kind == ExprKind::minus, v);
      }
      case ExprKind::binary: {
        SM_ASSIGN(a, eval(*e.children[0]));
        SM_ASSIGN(b, eval(*e.children[1]));
        return binary_op(e.op, a, b, budget_);
      }
      case ExprKind::logical_and:
      case ExprKind::logical_or: {  // Python's: the deciding operand itself, not a bool
        SM_ASSIGN(a, eval(*e.children[0]));
        if (truthy(a) == (e.kind == ExprKind::logical_or)) return a;
        return eval(*e.children[1]);
      }
      case ExprKind::compare:
        return eval_compare(e);
      case ExprKind::concat: {
        std::string out;
        for (const ExprPtr& c : e.children) {
          SM_ASSIGN(v, eval(*c));
          SM_ASSIGN(text, to_str(v, limits_.max_output_bytes));
          out += text;
          SM_TRY(check_string_size(out.size(), limits_));
        }
        return Value::string(std::move(out));
      }
      case ExprKind::conditional: {
        SM_ASSIGN(condition, eval(*e.children[0]));
        if (truthy(condition)) return eval(*e.children[1]);
        if (e.children[2]) return eval(*e.children[2]);
        return Value::undefined("");
      }
    }
    return make_error(ErrorCode::internal, "chat template: unknown expression");
  }

  // a < b < c: each pair in turn, stopping at the first false (Python's chained comparison).
  Expected<Value> eval_compare(const Expr& e) {
    SM_ASSIGN(left, eval(*e.children[0]));
    for (size_t i = 0; i < e.compare_ops.size(); ++i) {
      SM_ASSIGN(right, eval(*e.children[i + 1]));
      SM_TRY(charge_text(left));  // comparing and searching strings reads them
      SM_TRY(charge_text(right));
      bool holds = false;
      const CompareOp op = e.compare_ops[i];
      if (op == CompareOp::eq || op == CompareOp::ne) {
        holds = equals(left, right) == (op == CompareOp::eq);
      } else if (op == CompareOp::in || op == CompareOp::not_in) {
        SM_ASSIGN(found, contains(right, left));
        holds = found == (op == CompareOp::in);
      } else {
        if (left.is_undefined()) return undefined_error(left);
        if (right.is_undefined()) return undefined_error(right);
        SM_ASSIGN(c, compare(left, right));
        holds = op == CompareOp::lt ? c < 0 : op == CompareOp::le ? c <= 0 : op == CompareOp::gt ? c > 0 : c >= 0;
      }
      if (!holds) return Value::boolean(false);
      left = std::move(right);
    }
    return Value::boolean(true);
  }

  const Limits& limits_;
  Budget budget_;
  std::vector<Frame> frames_;
  std::string* out_ = nullptr;
};

}  // namespace

Status evaluate(const std::vector<Stmt>& program, std::vector<std::pair<std::string, Value>> variables,
                const Limits& limits, std::string& out) {
  return Evaluator(limits, std::move(variables)).run(program, out);
}

}  // namespace starmesh::jinja
