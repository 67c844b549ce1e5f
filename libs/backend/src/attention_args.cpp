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

}  // namespace starmesh
