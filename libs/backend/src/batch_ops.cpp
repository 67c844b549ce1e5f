// The batch ops' reference forms (backend.hpp): one call a row. The CPU backend runs these;
// the CUDA backend replaces them with one launch for many rows.
#include "starmesh/backend/backend.hpp"

namespace starmesh {

Status backend_i::scatter_rows(const Tensor& src, std::span<const Tensor> dst) {
  if (src.rank() < 1 || src.dim(0) != int64_t(dst.size()))
    return make_error("scatter_rows: ", to_string(src.shape()), " for ", dst.size(), " destinations");
  for (size_t i = 0; i < dst.size(); ++i) SM_TRY(copy(src.rows(int64_t(i), int64_t(i) + 1), dst[i]));
  return {};
}

Status backend_i::attention_batch(const Tensor& q, std::span<const SegmentList> items, float scale, const Tensor& o,
                                  const Tensor& lse) {
  if (q.rank() != 3 || q.dim(0) != int64_t(items.size()) || o.rank() != 3 || o.dim(0) != q.dim(0) || lse.rank() != 2 ||
      lse.dim(0) != q.dim(0))
    return make_error("attention_batch: q ", to_string(q.shape()), ", o ", to_string(o.shape()), ", lse ",
                      to_string(lse.shape()), " for ", items.size(), " items");
  for (size_t i = 0; i < items.size(); ++i) {
    const int64_t r = int64_t(i);
    SM_TRY(attention_segments(q.rows(r, r + 1), items[i].keys, items[i].values, scale, o.rows(r, r + 1),
                              lse.rows(r, r + 1)));
  }
  return {};
}

Expected<std::vector<int32_t>> backend_i::sample_rows(const Tensor& logits, std::span<const RowSample> draws) {
  if (auto checked = check_sample_rows_args(logits, draws, device()); !checked) return checked.error();
  std::vector<int32_t> tokens;
  tokens.reserve(draws.size());
  for (const RowSample& d : draws) {
    SM_ASSIGN(token, sample(logits.rows(d.row, d.row + 1), d.spec));
    tokens.push_back(token);
  }
  return tokens;
}

}  // namespace starmesh
