#include "starmesh/attention/phase2.hpp"

#include <algorithm>
#include <cstring>
#include <memory>
#include <numeric>

namespace starmesh {
namespace {

// Attention of q over (keys, values) with `mask`, left on the model's device (o in the
// activation dtype): the query host merges it there, no copy and no synchronisation.
Expected<AttentionState> device_partial(const Transformer& model, const Tensor& q, const Tensor& keys,
                                        const Tensor& values, AttentionMask mask) {
  backend_i& be = model.backend();
  const int64_t n = q.dim(0), hq = q.dim(1), d = q.dim(2);
  SM_ASSIGN(o, be.scratch(be.activation_dtype(), {n, hq, d}));
  SM_ASSIGN(lse, be.scratch(DType::f32, {n, hq}));
  SM_TRY(be.attention(q, keys, values, mask, model.attention_scale(), o, lse));
  return AttentionState{o, lse};
}

// Scratch for a partial state whose o (activation dtype) and lse (f32) lie back to back in one
// buffer, so that one download (one synchronisation, not two) brings both to the host: a
// shard host answers every layer of every step this way.
struct PackedState {
  Tensor buffer;
  AttentionState state;
};

Expected<PackedState> packed_scratch(backend_i& be, int64_t rows, int64_t hq, int64_t d) {
  SM_ASSIGN(buf, be.scratch(DType::f32, {partial_message_words(be.activation_dtype(), rows, hq, d)}));
  return PackedState{buf, unpack_partial(buf, be.activation_dtype(), rows, hq, d)};
}

// The host f32 state of a packed buffer, in one download.
Expected<AttentionState> download_packed(backend_i& be, const Tensor& buffer, int64_t rows, int64_t hq, int64_t d) {
  SM_ASSIGN(host, be.download(buffer));
  AttentionState s = unpack_partial(host, be.activation_dtype(), rows, hq, d);
  if (s.o.dtype() != DType::f32) s.o = Tensor::from_f32(s.o.to_f32_vector(), s.o.shape());
  return s;
}

// Moves the parts that are not on the backend's device (from the wire: host f32) there in
// one upload per layer, packed back to back; parts already there stay where they are.
Status to_device(backend_i& be, std::vector<AttentionState>& parts) {
  int64_t total = 0;
  for (const AttentionState& p : parts)
    if (p.o.device() != be.device()) {
      if (p.o.dtype() != DType::f32 || p.lse.dtype() != DType::f32)
        return make_error("phase 2: a partial state from the wire must be f32");
      total += p.o.numel() + p.lse.numel();
    }
  if (total == 0) return {};
  Tensor packed = Tensor::zeros(DType::f32, {total});
  float* at = packed.data_as<float>();
  for (const AttentionState& p : parts)
    if (p.o.device() != be.device())
      for (const Tensor* t : {&p.o, &p.lse}) at = std::copy_n(t->data_as<float>(), t->numel(), at);
  SM_ASSIGN(dev, be.upload(packed, DType::f32));
  int64_t off = 0;
  for (AttentionState& p : parts)
    if (p.o.device() != be.device())
      for (Tensor* t : {&p.o, &p.lse}) {
        *t = dev.rows(off, off + t->numel()).reshape(t->shape());
        off += t->numel();
      }
  return {};
}

// Whether a request's remote partials take q where it is, on the device: its other shards
// are here, or its data plane carries device memory.
bool on_device(const remote_partials_i& r) { return r.shards_here() || r.wants_q_on_device(); }

// Every part (uploaded first, where it came from the wire) merged into attn and lse.
Status merge_all(backend_i& be, std::vector<AttentionState> parts, const Tensor& attn, const Tensor& lse) {
  SM_TRY(to_device(be, parts));
  std::vector<Tensor> os, ls;
  for (const AttentionState& p : parts) {
    os.push_back(p.o);
    ls.push_back(p.lse);
  }
  return be.merge_states(os, ls, attn, lse);
}

}  // namespace

Expected<Tensor> q_on_device(backend_i& be, const Tensor& q) {
  if (q.device() != be.device()) return be.upload(q, be.activation_dtype());
  if (q.dtype() != be.activation_dtype())
    return make_error("phase 2: q is ", dtype_name(q.dtype()), " on the device, a partial takes ",
                      dtype_name(be.activation_dtype()));
  return q;
}

int64_t partial_message_words(DType o_dtype, int64_t rows, int64_t hq, int64_t d) {
  return (rows * hq * d * int64_t(dtype_size(o_dtype)) + 3) / 4 + rows * hq;
}

AttentionState unpack_partial(const Tensor& message, DType o_dtype, int64_t rows, int64_t hq, int64_t d) {
  auto keep = std::make_shared<Tensor>(message);
  const int64_t lse_at = partial_message_words(o_dtype, rows, hq, d) - rows * hq;
  return {Tensor::wrap(message.data(), o_dtype, {rows, hq, d}, message.device(), keep),
          Tensor::wrap(message.data_as<float>() + lse_at, DType::f32, {rows, hq}, message.device(), keep)};
}

Status shard_partial_into(const Transformer& model, const KvCache& shard, int layer, const Tensor& q,
                          const Tensor& message) {
  if (layer < 0 || layer >= shard.layers()) return make_error("shard_partial: no layer ", layer);
  backend_i& be = model.backend();
  if (q.device() != be.device() || q.dtype() != be.activation_dtype() || q.rank() != 3)
    return make_error("shard_partial_into: q must be [n, heads, d] ", dtype_name(be.activation_dtype()), " on ",
                      to_string(be.device()), ", it is ", to_string(q.shape()), " ", dtype_name(q.dtype()), " on ",
                      to_string(q.device()));
  const int64_t n = q.dim(0), hq = q.dim(1), d = q.dim(2);
  if (message.device() != be.device() || message.dtype() != DType::f32 ||
      message.numel() != partial_message_words(be.activation_dtype(), n, hq, d))
    return make_error("shard_partial_into: the message must be f32 [",
                      partial_message_words(be.activation_dtype(), n, hq, d), "] on ", to_string(be.device()));
  const AttentionState out = unpack_partial(message, be.activation_dtype(), n, hq, d);
  return be.attention(q, shard.keys(layer), shard.values(layer), AttentionMask::none(), model.attention_scale(), out.o,
                      out.lse);
}

Expected<AttentionState> shard_partial(const Transformer& model, const KvCache& shard, int layer, const Tensor& q) {
  if (layer < 0 || layer >= shard.layers()) return make_error("shard_partial: no layer ", layer);
  backend_i& be = model.backend();
  SM_ASSIGN(q_dev, q_on_device(be, q));
  const int64_t n = q.dim(0), hq = q.dim(1), d = q.dim(2);
  SM_ASSIGN(p, packed_scratch(be, n, hq, d));
  SM_TRY(be.attention(q_dev, shard.keys(layer), shard.values(layer), AttentionMask::none(), model.attention_scale(),
                      p.state.o, p.state.lse));
  return download_packed(be, p.buffer, n, hq, d);
}

Expected<std::vector<AttentionState>> shard_partials(const Transformer& model, std::span<const ShardAsk> asks) {
  if (asks.empty()) return std::vector<AttentionState>{};
  backend_i& be = model.backend();
  const int64_t b = int64_t(asks.size());
  const Shape row = asks[0].q.shape();
  if (row.size() != 3 || row[0] != 1)
    return make_error("shard_partials: q of ", to_string(row), ", want [1, heads, d]");
  const int64_t hq = row[1], d = row[2];
  // Every q into one host tensor, uploaded once.
  Tensor qs = Tensor::zeros(DType::f32, {b, hq, d});
  std::vector<Tensor> ks(asks.size()), vs(asks.size());
  std::vector<backend_i::SegmentList> items(asks.size());
  for (size_t i = 0; i < asks.size(); ++i) {
    const ShardAsk& a = asks[i];
    if (!a.shard || a.q.shape() != row || a.q.dtype() != DType::f32 || a.q.device().kind != DeviceKind::cpu)
      return make_error("shard_partials: ask ", i, " is not a host f32 q of ", to_string(row));
    if (a.layer < 0 || a.layer >= a.shard->layers())
      return make_error("shard_partials: ask ", i, ": no layer ", a.layer);
    std::memcpy(qs.data_as<float>() + int64_t(i) * hq * d, a.q.data(), a.q.nbytes());
    ks[i] = a.shard->keys(a.layer);
    vs[i] = a.shard->values(a.layer);
    items[i] = {{&ks[i], 1}, {&vs[i], 1}};
  }
  SM_ASSIGN(q_dev, be.upload(qs, be.activation_dtype()));
  SM_ASSIGN(p, packed_scratch(be, b, hq, d));
  SM_TRY(be.attention_batch(q_dev, items, model.attention_scale(), p.state.o, p.state.lse));
  SM_ASSIGN(host, download_packed(be, p.buffer, b, hq, d));
  std::vector<AttentionState> out;
  for (int64_t i = 0; i < b; ++i) out.push_back({host.o.rows(i, i + 1), host.lse.rows(i, i + 1)});
  return out;
}

Expected<std::vector<AttentionState>> InProcessShards::gather(int layer, const Tensor& q) {
  backend_i& be = model_.backend();
  SM_ASSIGN(q_dev, q_on_device(be, q));
  std::vector<AttentionState> out;
  for (const KvShard* s : shards_) {
    if (layer < 0 || layer >= s->cache.layers()) return make_error("phase 2: no layer ", layer);
    SM_ASSIGN(p, device_partial(model_, q_dev, s->cache.keys(layer), s->cache.values(layer), AttentionMask::none()));
    out.push_back(std::move(p));
  }
  return out;
}

Expected<QueryHost> QueryHost::create(const Transformer& model, std::shared_ptr<const KvShard> shard,
                                      int64_t context_tokens, int64_t capacity) {
  if (!shard) return make_error("the query host needs its shard");
  if (shard->end != context_tokens)
    return make_error("the query host must hold the last block: its shard ends at ", shard->end, ", the context at ",
                      context_tokens);
  SM_ASSIGN(local, model.make_cache(capacity));
  return QueryHost(model, std::move(shard), std::move(local), context_tokens);
}

Expected<Tensor> QueryHost::step(std::span<const int32_t> ids, remote_partials_i& remotes, bool all_rows) {
  const Transformer& model = *model_;
  backend_i& be = model.backend();
  const int64_t n = int64_t(ids.size()), past = local_.length();
  if (n == 0) return make_error("phase 2: no tokens to run");
  if (past + n > local_.capacity())
    return make_error("phase 2: ", past + n, " query and generated tokens exceed the local capacity of ",
                      local_.capacity());
  std::vector<int32_t> positions(static_cast<size_t>(n));
  std::iota(positions.begin(), positions.end(), int32_t(context_tokens_ + past));
  SM_ASSIGN(pos, model.positions(positions));
  SM_ASSIGN(hidden, model.embed(ids));
  const std::vector<const KvShard*>* here = n == 1 ? remotes.shards_here() : nullptr;
  for (int l = 0; l < model.layers(); ++l) {
    SM_ASSIGN(qkv, model.project_qkv(l, hidden, pos, local_));
    SM_ASSIGN(attn, be.scratch(be.activation_dtype(), {n, qkv.q.dim(1), qkv.q.dim(2)}));
    SM_ASSIGN(lse, be.scratch(DType::f32, {n, qkv.q.dim(1)}));
    std::vector<AttentionState> parts;
    if (!here) {
      SM_ASSIGN(got, remotes.gather(l, qkv.q));
      parts = std::move(got);
    }
    SM_TRY(attend(l, qkv.q, past, here, std::move(parts), attn, lse));
    SM_TRY(model.finish_layer(l, hidden, attn));
  }
  SM_TRY(local_.commit(n));
  return model.logits(all_rows ? hidden : hidden.rows(n - 1, n));
}

Status QueryHost::own_segments(int l, const std::vector<const KvShard*>* here, std::vector<Tensor>& ks,
                               std::vector<Tensor>& vs) const {
  ks.clear();
  vs.clear();
  if (here)
    for (const KvShard* s : *here) {
      if (l >= s->cache.layers()) return make_error("phase 2: no layer ", l);
      ks.push_back(s->cache.keys(l));
      vs.push_back(s->cache.values(l));
    }
  ks.push_back(shard_->cache.keys(l));
  vs.push_back(shard_->cache.values(l));
  ks.push_back(local_.keys(l, 1));  // the committed tokens and the one just written
  vs.push_back(local_.values(l, 1));
  return {};
}

Status QueryHost::attend(int l, const Tensor& q, int64_t past, const std::vector<const KvShard*>* here,
                         std::vector<AttentionState> parts, const Tensor& attn, const Tensor& lse) const {
  const Transformer& model = *model_;
  backend_i& be = model.backend();
  const int64_t n = q.dim(0);
  if (n == 1 && parts.empty()) {
    // A decode step with no other host's partials (every shard here, or one host): one call
    // over the shards and the local tokens, which the one new token sees whole (no mask).
    std::vector<Tensor> ks, vs;
    SM_TRY(own_segments(l, here, ks, vs));
    return be.attention_segments(q, ks, vs, model.attention_scale(), attn, lse);
  }
  // Else every host's state apart, merged in host order: the others', its shard's, its tokens'.
  SM_ASSIGN(own_shard, device_partial(model, q, shard_->cache.keys(l), shard_->cache.values(l), AttentionMask::none()));
  SM_ASSIGN(own_local,
            device_partial(model, q, local_.keys(l, n), local_.values(l, n), AttentionMask::causal_from(past)));
  parts.push_back(std::move(own_shard));
  parts.push_back(std::move(own_local));
  return merge_all(be, std::move(parts), attn, lse);
}

Expected<QueryHost::BatchStep> QueryHost::step_batch(std::span<QueryHost* const> hosts,
                                                     std::span<remote_partials_i* const> remotes,
                                                     std::span<const int32_t> ids, const GatherAll& gather_all) {
  std::vector<std::vector<int32_t>> each;
  for (int32_t id : ids) each.push_back({id});
  return step_batch(hosts, remotes, each, gather_all);
}

Expected<QueryHost::BatchStep> QueryHost::step_batch(std::span<QueryHost* const> hosts,
                                                     std::span<remote_partials_i* const> remotes,
                                                     std::span<const std::vector<int32_t>> ids,
                                                     const GatherAll& gather_all) {
  const size_t b = hosts.size();
  if (b == 0) return make_error("phase 2 batch: no requests");
  if (remotes.size() != b || ids.size() != b)
    return make_error("phase 2 batch: ", b, " query hosts, ", remotes.size(), " remote sets and ", ids.size(),
                      " token lists");
  const Transformer& model = *hosts[0]->model_;
  backend_i& be = model.backend();
  // Rows: the decode steps' (one token each) first, in the given order, then each prefill's
  // tokens: the decode rows are then one block for attention_batch.
  std::vector<size_t> decoding, prefilling;  // requests by kind, in row order
  for (size_t i = 0; i < b; ++i) (ids[i].size() == 1 ? decoding : prefilling).push_back(i);
  const int64_t decode_rows = int64_t(decoding.size());
  std::vector<int64_t> first_row(b), n(b);
  int64_t rows = 0;
  for (const auto* kind : {&decoding, &prefilling})
    for (size_t i : *kind) {
      n[i] = int64_t(ids[i].size());
      first_row[i] = rows;
      rows += n[i];
    }
  std::vector<int32_t> tokens(static_cast<size_t>(rows)), positions(static_cast<size_t>(rows));
  for (size_t i = 0; i < b; ++i) {
    const QueryHost& h = *hosts[i];
    if (h.model_ != &model) return make_error("phase 2 batch: request ", i, " runs another model");
    if (std::find(hosts.begin(), hosts.begin() + std::ptrdiff_t(i), &h) != hosts.begin() + std::ptrdiff_t(i))
      return make_error("phase 2 batch: request ", i, " is in the batch twice");
    if (n[i] == 0) return make_error("phase 2 batch: request ", i, " has no tokens to run");
    if (h.local_.length() + n[i] > h.local_.capacity())
      return make_error("phase 2 batch: request ", i, ": ", h.local_.length() + n[i],
                        " query and generated tokens exceed the local capacity of ", h.local_.capacity());
    for (int64_t j = 0; j < n[i]; ++j) {
      tokens[size_t(first_row[i] + j)] = ids[i][size_t(j)];
      positions[size_t(first_row[i] + j)] = int32_t(h.context_tokens_ + h.local_.length() + j);
    }
  }
  BatchStep out;
  out.outcome.resize(b);
  SM_ASSIGN(pos, model.positions(positions));
  SM_ASSIGN(hidden, model.embed(tokens));
  std::vector<Tensor> k_rows(static_cast<size_t>(rows)), v_rows(static_cast<size_t>(rows));
  for (int l = 0; l < model.layers(); ++l) {
    SM_ASSIGN(qkv, model.project_qkv(l, hidden, pos));
    for (size_t i = 0; i < b; ++i) {  // each request's new KV rows into its own cache, in one call
      SM_ASSIGN(fresh, hosts[i]->local_.new_rows(l, n[i]));
      for (int64_t j = 0; j < n[i]; ++j) {
        k_rows[size_t(first_row[i] + j)] = fresh.keys.rows(j, j + 1);
        v_rows[size_t(first_row[i] + j)] = fresh.values.rows(j, j + 1);
      }
    }
    SM_TRY(be.scatter_rows(qkv.k, k_rows));
    SM_TRY(be.scatter_rows(qkv.v, v_rows));
    // The remote partials of the requests still in the step whose other hosts are not here
    // (a prefill always asks them, as step() does). A decode step that asks them is `apart`:
    // its own partials merge with theirs.
    std::vector<size_t> networked;
    std::vector<char> apart(b, 0);
    bool wire = false;  // some asked for are on other hosts, not in this process
    for (size_t i = 0; i < b; ++i)
      if (out.outcome[i] && (n[i] > 1 || !remotes[i]->shards_here())) {
        networked.push_back(i);
        apart[i] = n[i] == 1;
        wire = wire || !on_device(*remotes[i]);
      }
    // Their q to the host first (unless their data plane takes it on the device), in one
    // download, then the decode steps' own attention queued: the device runs it while the
    // exchange waits on the network (the exchange's own download would otherwise wait for it,
    // and the device would idle through the round trip).
    Tensor q_host;
    if (wire) {
      SM_ASSIGN(down, be.download(qkv.q));
      q_host = down;
    }
    std::vector<Tensor> qs;
    for (size_t i : networked)
      qs.push_back((on_device(*remotes[i]) ? qkv.q : q_host).rows(first_row[i], first_row[i] + n[i]));
    const int64_t hq = qkv.q.dim(1), d = qkv.q.dim(2);
    SM_ASSIGN(attn, be.scratch(be.activation_dtype(), {rows, hq, d}));
    SM_ASSIGN(attn_lse, be.scratch(DType::f32, {rows, hq}));
    OwnDecode own;
    if (!decoding.empty()) {
      SM_ASSIGN(queued, queue_decoding(l, hosts, remotes, decoding, apart, qkv.q.rows(0, decode_rows),
                                       attn.rows(0, decode_rows), attn_lse.rows(0, decode_rows)));
      own = std::move(queued);
    }
    std::vector<std::vector<AttentionState>> parts(b);
    if (!networked.empty()) {
      std::vector<Expected<std::vector<AttentionState>>> got;
      if (gather_all) {
        got = gather_all(l, networked, qs);
      } else {
        for (size_t j = 0; j < networked.size(); ++j) got.push_back(remotes[networked[j]]->gather(l, qs[j]));
      }
      if (got.size() != networked.size())
        return make_error("phase 2 batch: ", got.size(), " partial sets for ", networked.size(), " requests");
      for (size_t j = 0; j < networked.size(); ++j) {
        const size_t i = networked[j];
        if (got[j])
          parts[i] = std::move(*got[j]);
        else
          out.outcome[i] = got[j].status();
      }
    }
    if (!decoding.empty())
      SM_TRY(merge_decoding(be, own, decoding, apart, parts, out.outcome, attn.rows(0, decode_rows),
                            attn_lse.rows(0, decode_rows)));
    // Each prefill as step() attends it (a failed one over its own shard and tokens only:
    // finite rows, unused).
    for (size_t i : prefilling) {
      const int64_t r = first_row[i];
      SM_TRY(hosts[i]->attend(l, qkv.q.rows(r, r + n[i]), hosts[i]->local_.length(), nullptr, std::move(parts[i]),
                              attn.rows(r, r + n[i]), attn_lse.rows(r, r + n[i])));
    }
    SM_TRY(model.finish_layer(l, hidden, attn));
  }
  for (size_t i = 0; i < b; ++i)
    if (out.outcome[i]) SM_TRY(hosts[i]->local_.commit(n[i]));
  // Each request's last row, in the given order (with no prefill: the rows as they are),
  // copied in runs of consecutive rows.
  Tensor last = hidden;
  if (rows != int64_t(b)) {
    SM_ASSIGN(picked, be.scratch(hidden.dtype(), {int64_t(b), hidden.dim(1)}));
    for (size_t i = 0; i < b;) {
      size_t end = i + 1;
      const int64_t from = first_row[i] + n[i] - 1;
      while (end < b && first_row[end] + n[end] - 1 == from + int64_t(end - i)) ++end;
      SM_TRY(be.copy(hidden.rows(from, from + int64_t(end - i)), picked.rows(int64_t(i), int64_t(end))));
      i = end;
    }
    last = picked;
  }
  SM_ASSIGN(logits, model.logits(last));
  out.logits = logits;
  return out;
}

Expected<QueryHost::OwnDecode> QueryHost::queue_decoding(int l, std::span<QueryHost* const> hosts,
                                                         std::span<remote_partials_i* const> remotes,
                                                         std::span<const size_t> decoding, std::span<const char> apart,
                                                         const Tensor& q, const Tensor& attn, const Tensor& lse) {
  // Every request's own keys in one call: all of them (the shards here, or its own, and its
  // tokens) for a request that is not apart; for one that is, its shard alone, and its tokens
  // in a second call, so that its merge takes every host's state apart, in the order attend()
  // does. A request that drops out still gets rows (finite, unused).
  const Transformer& model = *hosts[decoding[0]]->model_;
  backend_i& be = model.backend();
  const size_t m = decoding.size();
  std::vector<std::vector<Tensor>> ks(m), vs(m);
  std::vector<backend_i::SegmentList> items(m), local_items(m);
  OwnDecode own;
  for (size_t j = 0; j < m; ++j) {
    const size_t i = decoding[j];
    SM_TRY(hosts[i]->own_segments(l, remotes[i]->shards_here(), ks[j], vs[j]));
    const std::span<const Tensor> k_all(ks[j]), v_all(vs[j]);
    own.any_apart = own.any_apart || apart[i];
    items[j] = {apart[i] ? k_all.first(1) : k_all, apart[i] ? v_all.first(1) : v_all};
    local_items[j] = {k_all.last(1), v_all.last(1)};
  }
  if (!own.any_apart) {
    SM_TRY(be.attention_batch(q, items, model.attention_scale(), attn, lse));
    return own;
  }
  const Shape o_shape = q.shape(), lse_shape = lse.shape();
  SM_ASSIGN(shard_o, be.scratch(be.activation_dtype(), o_shape));
  SM_ASSIGN(shard_lse, be.scratch(DType::f32, lse_shape));
  SM_ASSIGN(local_o, be.scratch(be.activation_dtype(), o_shape));
  SM_ASSIGN(local_lse, be.scratch(DType::f32, lse_shape));
  own = {true, shard_o, shard_lse, local_o, local_lse};
  SM_TRY(be.attention_batch(q, items, model.attention_scale(), own.shard, own.shard_lse));
  SM_TRY(be.attention_batch(q, local_items, model.attention_scale(), own.local, own.local_lse));
  return own;
}

Status QueryHost::merge_decoding(backend_i& be, const OwnDecode& own, std::span<const size_t> decoding,
                                 std::span<const char> apart, std::vector<std::vector<AttentionState>>& parts,
                                 std::span<const Status> outcome, const Tensor& attn, const Tensor& lse) {
  if (!own.any_apart) return {};  // queue_decoding wrote them
  for (size_t j = 0; j < decoding.size(); ++j) {
    const size_t i = decoding[j];
    const int64_t r = int64_t(j);
    if (apart[i] && outcome[i]) {  // the other hosts' partials, then its shard's, then its tokens'
      parts[i].push_back({own.shard.rows(r, r + 1), own.shard_lse.rows(r, r + 1)});
      parts[i].push_back({own.local.rows(r, r + 1), own.local_lse.rows(r, r + 1)});
      SM_TRY(merge_all(be, std::move(parts[i]), attn.rows(r, r + 1), lse.rows(r, r + 1)));
    } else {
      SM_TRY(be.copy(own.shard.rows(r, r + 1), attn.rows(r, r + 1)));  // its lse row is not read again
    }
  }
  return {};
}

}  // namespace starmesh
