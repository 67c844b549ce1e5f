#include "starmesh/model/warm_up.hpp"

#include <numeric>
#include <vector>

namespace starmesh {

Status warm_up_gemms(const Transformer& model, int max_rows) {
  for (int n = 1; n <= max_rows; ++n) {
    const std::vector<int32_t> ids(size_t(n), 0);
    std::vector<int32_t> at(static_cast<size_t>(n));
    std::iota(at.begin(), at.end(), 0);
    SM_ASSIGN(hidden, model.embed(ids));
    SM_ASSIGN(pos, model.positions(at));
    SM_ASSIGN(qkv, model.project_qkv(0, hidden, pos));
    SM_TRY(model.finish_layer(0, hidden, qkv.q));  // q has attention's shape [n, hq, d]
    SM_TRY(model.logits(hidden).status());
  }
  return model.backend().synchronize();
}

}  // namespace starmesh
