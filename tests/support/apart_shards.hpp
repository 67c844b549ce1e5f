#pragma once
// The other hosts' shards in this process, asked the way partials from the wire are: each
// shard's partial apart, merged by the query host with its own. (InProcessShards also says
// its shards are here, and a decode step then asks them all in one kernel, whose rounding on
// a GPU differs from the merge of separate partials.) The reference of the wire paths on a GPU.
#include "starmesh/attention/phase2.hpp"

namespace starmesh::test {

class ApartShards final : public remote_partials_i {
 public:
  ApartShards(const Transformer& model, std::vector<const KvShard*> shards) : shards_(model, std::move(shards)) {}
  Expected<std::vector<AttentionState>> gather(int layer, const Tensor& q) override { return shards_.gather(layer, q); }

 private:
  InProcessShards shards_;
};

}  // namespace starmesh::test
