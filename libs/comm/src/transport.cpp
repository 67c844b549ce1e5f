#include "starmesh/comm/transport.hpp"

#include <cstring>

namespace starmesh {

std::string describe(const Transfer& t) {
  return std::string(t.kind == TransferKind::send ? "send to" : "recv from") + " peer " + std::to_string(t.peer) +
         ", tag " + std::to_string(t.tag) + ", " + std::to_string(t.tensor.nbytes()) + " B";
}

Status transport_i::send(int peer, uint64_t tag, const Tensor& t, Deadline deadline) {
  const Transfer one[] = {Transfer::send(peer, tag, t)};
  return exchange(one, deadline);
}

Status transport_i::recv(int peer, uint64_t tag, const Tensor& into, Deadline deadline) {
  const Transfer one[] = {Transfer::recv(peer, tag, into)};
  return exchange(one, deadline);
}

Status transport_i::broadcast(int root, uint64_t tag, const Tensor& t, Deadline deadline) {
  if (root < 0 || root >= size())
    return make_error(name(), " broadcast: root ", root, " is not a rank of this group of ", size());
  if (rank() != root) return recv(root, tag, t, deadline);
  std::vector<Transfer> sends;
  sends.reserve(size_t(size()));
  for (int r = 0; r < size(); ++r)
    if (r != root) sends.push_back(Transfer::send(r, tag, t));
  return exchange(sends, deadline);
}

Status transport_i::gather(int root, uint64_t tag, const Tensor& t, std::span<const Tensor> out, Deadline deadline) {
  if (root < 0 || root >= size())
    return make_error(name(), " gather: root ", root, " is not a rank of this group of ", size());
  if (rank() != root) return send(root, tag, t, deadline);
  if (out.size() != size_t(size()))
    return make_error(name(), " gather: root needs one output tensor per rank (", size(), "), got ", out.size());
  const Tensor& own = out[size_t(root)];
  if (own.nbytes() != t.nbytes())
    return make_error(name(), " gather: out[", root, "] holds ", own.nbytes(), " B but the root's tensor has ",
                      t.nbytes(), " B");
  std::vector<Transfer> batch;
  batch.reserve(size_t(size()) + 1);
  for (int r = 0; r < size(); ++r)
    if (r != root) batch.push_back(Transfer::recv(r, tag, out[size_t(r)]));
  if (own.data() != t.data()) {
    if (own.device().kind == DeviceKind::cpu && t.device().kind == DeviceKind::cpu) {
      std::memcpy(own.data(), t.data(), t.nbytes());
    } else {  // device memory: a transfer to self, which every transport supports
      batch.push_back(Transfer::send(root, tag, t));
      batch.push_back(Transfer::recv(root, tag, own));
    }
  }
  return exchange(batch, deadline);
}

}  // namespace starmesh
