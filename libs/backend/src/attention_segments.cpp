#include "starmesh/backend/backend.hpp"

namespace starmesh {

Status backend_i::attention_segments(const Tensor& q, std::span<const Tensor> keys, std::span<const Tensor> values,
                                     float scale, const Tensor& o, const Tensor& lse) {
  if (keys.empty() || keys.size() != values.size())
    return make_error("attention_segments: ", keys.size(), " key and ", values.size(), " value segments");
  std::vector<Tensor> os, ls;
  for (size_t i = 0; i < keys.size(); ++i) {
    SM_ASSIGN(oi, scratch(o.dtype(), o.shape()));
    SM_ASSIGN(li, scratch(DType::f32, lse.shape()));
    SM_TRY(attention(q, keys[i], values[i], AttentionMask::none(), scale, oi, li));
    os.push_back(oi);
    ls.push_back(li);
  }
  return merge_states(os, ls, o, lse);
}

}  // namespace starmesh
