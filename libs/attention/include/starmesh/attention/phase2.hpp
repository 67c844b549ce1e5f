#pragma once
// Phase 2 of Star Attention: the query and each generated token attend to every cached
// token exactly. Per layer, the query host sends Q to the other hosts, each returns its
// partial state (o, lse) over its shard (no mask: every shard token precedes the query),
// and the query host merges them with its own partials over its shard and over the query /
// generated tokens (causal among themselves).
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "starmesh/attention/attention_state.hpp"
#include "starmesh/attention/phase1.hpp"

namespace starmesh {

// Shard side: the partial state of q [n, hq, d] (on the model's device, or on the host as it
// came from the wire: uploaded first) over layer `layer` of `shard`, no mask. Returned on the
// host (f32), ready for the wire or the merge.
Expected<AttentionState> shard_partial(const Transformer& model, const KvCache& shard, int layer, const Tensor& q);

// q as a partial takes it: on the model's device in the activation dtype (uploaded when it is
// on the host, as it comes from the wire or from step_batch's download).
Expected<Tensor> q_on_device(backend_i& be, const Tensor& q);

// The partial state as one message on a data plane that carries device memory (NCCL): o in
// `o_dtype` (the activation dtype), padded to whole f32 words, then lse f32 [rows, hq].
int64_t partial_message_words(DType o_dtype, int64_t rows, int64_t hq, int64_t d);
// Its state, as views of `message` (f32 [partial_message_words], on its device).
AttentionState unpack_partial(const Tensor& message, DType o_dtype, int64_t rows, int64_t hq, int64_t d);
// Shard side over such a plane: the partial of q (on the model's device, activation dtype)
// written into `message` on the device, ready to send; nothing comes to the host.
Status shard_partial_into(const Transformer& model, const KvCache& shard, int layer, const Tensor& q,
                          const Tensor& message);

// Shard side, many requests at once: ask i's partial of its q (host f32 [1, hq, d]) over layer
// `layer` of its shard, each as shard_partial gives it alone, with one upload of every q, one
// attention_batch and one download each of o and lse (a worker serving many requests' shards).
struct ShardAsk {
  const KvCache* shard = nullptr;
  int layer = 0;
  Tensor q;
};
Expected<std::vector<AttentionState>> shard_partials(const Transformer& model, std::span<const ShardAsk> asks);

// Where the query host gets the other hosts' partials for one layer: in one process, direct
// calls (InProcessShards, states left on the device); in the mesh, the data plane (host f32
// states, uploaded together). The query host merges them all on its device.
class remote_partials_i {
 public:
  virtual ~remote_partials_i() = default;
  // q [n, hq, d] on the model's device, or on the host (step_batch downloads the q of every
  // request whose shards are not here at once, before it queues its own attention).
  virtual Expected<std::vector<AttentionState>> gather(int layer, const Tensor& q) = 0;
  // Whether gather wants q where it is, on the device (a data plane that carries device
  // memory): step_batch then does not download it.
  virtual bool wants_q_on_device() const { return false; }
  // The other hosts' shards when they are in this process, on the query host's device (null
  // otherwise): a decode step then asks every shard and its own tokens in one call.
  virtual const std::vector<const KvShard*>* shards_here() const { return nullptr; }
};

// The other hosts' shards, held in this process (tests, `--mode star` in one process).
class InProcessShards final : public remote_partials_i {
 public:
  InProcessShards(const Transformer& model, std::vector<const KvShard*> shards)
      : model_(model), shards_(std::move(shards)) {}
  Expected<std::vector<AttentionState>> gather(int layer, const Tensor& q) override;
  const std::vector<const KvShard*>* shards_here() const override { return &shards_; }

 private:
  const Transformer& model_;
  std::vector<const KvShard*> shards_;
};

// The host with the last block: its shard, the KV of query and generated tokens, and the
// per-layer merge. Positions of new tokens follow the whole context.
class QueryHost {
 public:
  // capacity: how many query + generated tokens the local cache can hold. The shard is only
  // read: a kept context's shard may serve several query hosts, one after another or at once.
  static Expected<QueryHost> create(const Transformer& model, std::shared_ptr<const KvShard> shard,
                                    int64_t context_tokens, int64_t capacity);
  static Expected<QueryHost> create(const Transformer& model, KvShard shard, int64_t context_tokens, int64_t capacity) {
    return create(model, std::make_shared<const KvShard>(std::move(shard)), context_tokens, capacity);
  }

  // Runs `ids` (the query, or one generated token) through every layer; returns the logits
  // of the last one [1, vocab] (all_rows: of every one) on the model's backend.
  Expected<Tensor> step(std::span<const int32_t> ids, remote_partials_i& remotes, bool all_rows = false);

  // Request i's remote partials for one layer, for every i in `which`, in that order, given
  // their q rows (a prefill's: all of them); an error fails that request alone. The default asks each
  // remotes[i]->gather in turn; a caller with a thread per request (DecodeBatcher) waits on
  // all their networks at once.
  using GatherAll = std::function<std::vector<Expected<std::vector<AttentionState>>>(
      int layer, std::span<const size_t> which, std::span<const Tensor> qs)>;
  struct BatchStep {
    Tensor logits;                // [requests, vocab]; a failed request's row means nothing
    std::vector<Status> outcome;  // per request: ok (it advanced by its tokens) or why it failed
  };
  // One step of several requests at once (ids[i] for hosts[i], all on one model): each
  // request's tokens are one generated token (a decode step) or its query (a prefill, joining
  // the others' decode steps instead of running alone). The projections and the MLP run as
  // GEMMs over every row of the batch, the KV writes as one call
  // (backend_i::scatter_rows), the decode steps' attention over their own shards and tokens
  // as one call (attention_batch), each prefill's as step() does it. Row i of the logits (of
  // request i's last token) equals what hosts[i]->step(ids[i], *remotes[i]) returns alone. A
  // request whose partials fail drops out of the step (it does not advance); the others go
  // on. An error of the whole batch (bad arguments, a request out of room, a device failure)
  // advances no request.
  static Expected<BatchStep> step_batch(std::span<QueryHost* const> hosts, std::span<remote_partials_i* const> remotes,
                                        std::span<const std::vector<int32_t>> ids, const GatherAll& gather_all = {});
  // The same, one token each.
  static Expected<BatchStep> step_batch(std::span<QueryHost* const> hosts, std::span<remote_partials_i* const> remotes,
                                        std::span<const int32_t> ids, const GatherAll& gather_all = {});

  int64_t local_tokens() const { return local_.length(); }
  // How many more query and generated tokens the local cache can take.
  int64_t room() const { return local_.capacity() - local_.length(); }
  const KvShard& shard() const { return *shard_; }
  const Transformer& model() const { return *model_; }

 private:
  QueryHost(const Transformer& model, std::shared_ptr<const KvShard> shard, KvCache local, int64_t context_tokens)
      : model_(&model), shard_(std::move(shard)), local_(std::move(local)), context_tokens_(context_tokens) {}

  // Layer `layer`'s attention of q [n, hq, d], whose rows are local_'s [past, past + n)
  // (written, not committed), over every cached token: with every shard here (`here`, for one
  // token) one call over them all; else `remote` (the other hosts' partials) merged with this
  // host's own. Writes attn [n, hq, d] and lse [n, hq].
  Status attend(int layer, const Tensor& q, int64_t past, const std::vector<const KvShard*>* here,
                std::vector<AttentionState> remote, const Tensor& attn, const Tensor& lse) const;
  // step_batch's attention of its decode steps (requests `decoding`, one row each of q, in
  // that order) into attn and lse, in two halves around the network. queue_decoding queues
  // their own attention before the exchange, so that the device runs it while the network is
  // waited on: one attention_batch over their own keys, and where any is `apart` (other hosts'
  // partials to come), over its shard alone, and a second over its tokens. merge_decoding then
  // merges each apart request's partials (`parts`) with its own.
  struct OwnDecode {
    bool any_apart = false;  // else queue_decoding wrote attn and lse
    Tensor shard, shard_lse, local, local_lse;
  };
  static Expected<OwnDecode> queue_decoding(int layer, std::span<QueryHost* const> hosts,
                                            std::span<remote_partials_i* const> remotes,
                                            std::span<const size_t> decoding, std::span<const char> apart,
                                            const Tensor& q, const Tensor& attn, const Tensor& lse);
  static Status merge_decoding(backend_i& be, const OwnDecode& own, std::span<const size_t> decoding,
                               std::span<const char> apart, std::vector<std::vector<AttentionState>>& parts,
                               std::span<const Status> outcome, const Tensor& attn, const Tensor& lse);
  // A one-token step's keys on this device for layer `layer`, in merge order: every shard
  // `here` (else its own shard), then the local tokens with the new one (written, not committed).
  Status own_segments(int layer, const std::vector<const KvShard*>* here, std::vector<Tensor>& ks,
                      std::vector<Tensor>& vs) const;

  const Transformer* model_;
  std::shared_ptr<const KvShard> shard_;
  KvCache local_;  // query and generated tokens
  int64_t context_tokens_;
};

}  // namespace starmesh
