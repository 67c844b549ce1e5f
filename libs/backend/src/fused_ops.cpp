// The fused ops' default: the unfused ops in order. The CPU backend keeps these (they are the
// reference); the CUDA backend runs each as one kernel for a decode step.
#include "starmesh/backend/backend.hpp"

namespace starmesh {

Status backend_i::rope_store_kv(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& positions,
                                const Tensor& inv_freq, const Tensor& k_dst, const Tensor& v_dst) {
  const bool side_by_side = q.rank() == 3 && k.rank() == 3 && q.dim(0) == 1 && k.dim(0) == 1 &&
                            q.dtype() == k.dtype() && q.device() == k.device() && q.dim(2) == k.dim(2) &&
                            static_cast<const char*>(q.data()) + q.nbytes() == k.data();
  if (side_by_side) {  // one token's stacked projection: one launch rotates both
    const Tensor both = Tensor::wrap(q.data(), q.dtype(), {1, q.dim(1) + k.dim(1), q.dim(2)}, q.device(), nullptr);
    SM_TRY(rope(both, positions, inv_freq));
  } else {
    SM_TRY(rope(q, positions, inv_freq));
    SM_TRY(rope(k, positions, inv_freq));
  }
  SM_TRY(copy(k, k_dst));
  return copy(v, v_dst);
}

Status backend_i::gate_up_swiglu(const Tensor& x, const Tensor& w, const Tensor& out) {
  if (x.rank() != 2 || w.rank() != 2 || w.dim(0) % 2 || out.rank() != 2 || out.dim(0) != x.dim(0) ||
      out.dim(1) * 2 != w.dim(0))
    return make_error("gate_up_swiglu: x ", to_string(x.shape()), ", stacked weight ", to_string(w.shape()),
                      " and out ", to_string(out.shape()), " do not fit (want [n, k], [2f, k], [n, f])");
  const int64_t n = x.dim(0), f = out.dim(1);
  if (n == 1) {  // one GEMM over the stack: gate and up are the two halves of its row
    SM_ASSIGN(gate_up, scratch(out.dtype(), {2, f}));
    SM_TRY(matmul(x, w, gate_up.reshape({1, 2 * f})));
    return swiglu(gate_up.rows(0, 1), gate_up.rows(1, 2), out);
  }
  SM_ASSIGN(gate, scratch(out.dtype(), {n, f}));
  SM_ASSIGN(up, scratch(out.dtype(), {n, f}));
  SM_TRY(matmul(x, w.rows(0, f), gate));
  SM_TRY(matmul(x, w.rows(f, 2 * f), up));
  return swiglu(gate, up, out);
}

Status backend_i::matmul_add(const Tensor& x, const Tensor& w, const Tensor& out) {
  SM_ASSIGN(product, scratch(out.dtype(), out.shape()));
  SM_TRY(matmul(x, w, product));
  return add(out, product, out);
}

}  // namespace starmesh
