#pragma once
// A request's UCX group on a worker (data_plane.cpp): the UCX data plane's transport, and the
// NCCL data plane's host half.
#include "starmesh/comm/ucx_transport.hpp"

namespace starmesh {

Expected<std::unique_ptr<transport_i>> join_ucx_group(UcxContext& ctx, uint64_t request_id, int rank,
                                                      const std::vector<std::vector<uint8_t>>& addresses,
                                                      const MessageKey& key);

}  // namespace starmesh
