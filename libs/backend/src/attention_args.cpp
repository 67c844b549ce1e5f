#include "starmesh/backend/backend.hpp"

namespace starmesh {

Status check_attention_args(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o, const Tensor& lse,
                            DType act) {
  if (q.rank() != 3 || k.rank() != 3)
    return make_error("attention: q and k must be [n, heads, d], got ", to_string(q.shape()), " and ",
                      to_string(k.shape()));
  const int64_t nq = q.dim(0), hq = q.dim(1), d = q.dim(2), nk = k.dim(0), hkv = k.dim(1);
  if (hkv == 0 || hq % hkv) return make_error("attention: ", hq, " query heads do not split into ", hkv, " kv heads");
  SM_TRY(expect_tensor(q, act, {nq, hq, d}, "attention q"));
  SM_TRY(expect_tensor(k, act, {nk, hkv, d}, "attention k"));
  SM_TRY(expect_tensor(v, act, {nk, hkv, d}, "attention v"));
  SM_TRY(expect_tensor(o, act, {nq, hq, d}, "attention o"));
  return expect_tensor(lse, DType::f32, {nq, hq}, "attention lse");
}

Status check_merge_args(std::span<const Tensor> o_parts, std::span<const Tensor> lse_parts, const Tensor& o,
                        const Tensor& lse, DType act) {
  if (o_parts.empty()) return make_error("merge_states: no parts");
  if (o_parts.size() != lse_parts.size())
    return make_error("merge_states: ", o_parts.size(), " o parts but ", lse_parts.size(), " lse parts");
  if (o.rank() != 3) return make_error("merge_states: o must be [n, heads, d], got ", to_string(o.shape()));
  const Shape state = o.shape(), rows_heads{o.dim(0), o.dim(1)};
  auto check_o = [&](const Tensor& t, const char* what) -> Status {
    return expect_tensor(t, t.dtype() == DType::f32 ? DType::f32 : act, state, what);
  };
  SM_TRY(check_o(o, "merge_states o"));
  SM_TRY(expect_tensor(lse, DType::f32, rows_heads, "merge_states lse"));
  for (size_t i = 0; i < o_parts.size(); ++i) {
    SM_TRY(check_o(o_parts[i], "merge_states o part"));
    SM_TRY(expect_tensor(lse_parts[i], DType::f32, rows_heads, "merge_states lse part"));
    if (o_parts[i].data() == o.data() || lse_parts[i].data() == lse.data())
      return make_error("merge_states: part ", i, " aliases the output");
  }
  return {};
}

}  // namespace starmesh
