// Phase 2's device-memory path (the NCCL data plane's) on a real GPU in one process: a shard
// host's thread and a query host share one CUDA backend, their messages carried by a fabric
// that moves GPU tensors through the host. NCCL itself cannot run this on one GPU (it refuses
// two ranks on one device); its transfers are tested in test_nccl_transport.cpp, this checks
// everything around them: Q sent from the device in bf16, shard_partial_into packing (o, lse)
// on the device, the query host merging the partials where they land.
#ifdef STARMESH_COMM_NCCL
#include <cuda_runtime_api.h>
#include <doctest/doctest.h>

#include <chrono>
#include <thread>

#include "starmesh/attention/block_plan.hpp"
#include "starmesh/backend/cuda_backend.hpp"
#include "starmesh/comm/in_process_transport.hpp"
#include "starmesh/launch/local_group.hpp"
#include "starmesh/runtime/remote_shards.hpp"
#include "starmesh/runtime/shard_server.hpp"
#include "support/apart_shards.hpp"
#include "support/cuda_devices.hpp"
#include "support/engine_reference.hpp"
#include "support/forwarding_endpoint.hpp"

using namespace starmesh;
using namespace std::chrono_literals;

namespace {

// A fabric endpoint that carries GPU tensors by copying them through host memory, after the
// whole device is synchronised (so whatever stream wrote them is done): slow, and exact.
class StagedDeviceEndpoint final : public test::ForwardingEndpoint {
 public:
  explicit StagedDeviceEndpoint(transport_i& fabric) : ForwardingEndpoint(fabric, true) {}
  std::string name() const override { return "staged-device"; }

  Status exchange(std::span<const Transfer> transfers, Deadline deadline) override {
    std::vector<Transfer> host;
    std::vector<std::pair<Tensor, Tensor>> arrivals;  // (device tensor, its host copy)
    bool synced = false;
    for (const Transfer& t : transfers) {
      if (t.tensor.device().kind == DeviceKind::cpu) {
        host.push_back(t);
        continue;
      }
      if (!synced && cudaDeviceSynchronize() != cudaSuccess) return make_error("cudaDeviceSynchronize failed");
      synced = true;
      Tensor staged = Tensor::zeros(t.tensor.dtype(), t.tensor.shape());
      if (t.kind == TransferKind::send) {
        if (cudaMemcpy(staged.data(), t.tensor.data(), t.tensor.nbytes(), cudaMemcpyDeviceToHost) != cudaSuccess)
          return make_error("staging a send failed");
      } else {
        arrivals.emplace_back(t.tensor, staged);
      }
      host.push_back({t.kind, t.peer, t.tag, staged});
    }
    SM_TRY(fabric_.exchange(host, deadline));
    for (const auto& [device, staged] : arrivals)
      if (cudaMemcpy(device.data(), staged.data(), staged.nbytes(), cudaMemcpyHostToDevice) != cudaSuccess)
        return make_error("unstaging a receive failed");
    return {};
  }
};

}  // namespace

TEST_CASE(
    "device-memory phase 2 on one GPU - a shard host thread and the query host equal the star engine (needs 1 GPU)" *
    doctest::skip(test::cuda_devices() < 1)) {
  // In a child: this process forks the NCCL cases' ranks, and a child of a process that has
  // started CUDA cannot use it.
  auto results = run_local_group(
      1,
      [](LocalBootstrap&) -> Status {
        SM_ASSIGN(be, CudaBackend::create(0));
        SM_ASSIGN(model, Transformer::load(*be, STARMESH_GOLDEN_MODEL_DIR));
        const auto ctx = test::random_token_ids(700, 21), query = test::random_token_ids(6, 22);
        const int max_new = 10, hosts = 3;
        SM_ASSIGN(plan, plan_blocks(int64_t(ctx.size()), 256, -1, hosts));
        std::vector<KvShard> shards;
        for (int h = 0; h < hosts; ++h) {
          SM_ASSIGN(s, encode_host(model, plan, h, ctx));
          shards.push_back(std::move(s));
        }
        const int64_t capacity = int64_t(query.size()) + max_new;
        // The reference first: the same shards asked directly on the same device, each apart (as the wire does).
        const auto last = std::make_shared<const KvShard>(std::move(shards.back()));  // the query host's
        SM_ASSIGN(ref_host, QueryHost::create(model, last, int64_t(ctx.size()), capacity));
        test::ApartShards here(model, {&shards[0], &shards[1]});
        const test::Reference want = test::record_generation(
            model, query, max_new, [&](std::span<const int32_t> x) { return ref_host.step(x, here); });

        InProcessFabric fabric(hosts);
        std::vector<std::unique_ptr<StagedDeviceEndpoint>> ends;
        for (int r = 0; r < hosts; ++r) ends.push_back(std::make_unique<StagedDeviceEndpoint>(fabric.endpoint(r)));
        MutexComputeLock compute;
        std::atomic<bool> stop{false};
        std::vector<Status> served(hosts - 1);
        std::vector<std::thread> threads;
        for (int r = 0; r + 1 < hosts; ++r)
          threads.emplace_back([&, r] {
            auto s = serve_shard(model, shards[size_t(r)].cache, *ends[size_t(r)], compute, stop, ShardServerOptions{});
            served[size_t(r)] = s ? (s->steps > 0 ? Status{} : make_error("no step served")) : s.status();
          });
        SM_ASSIGN(host, QueryHost::create(model, last, int64_t(ctx.size()), capacity));
        RemoteShards remotes(model, *ends.back(), {"shard 0", "shard 1"}, 30s);
        test::Reference got;
        {
          std::unique_lock<compute_lock_i> lock(compute);
          remotes.release_while_waiting(&lock);
          got = test::record_generation(model, query, max_new,
                                        [&](std::span<const int32_t> x) { return host.step(x, remotes); });
          remotes.release_while_waiting(nullptr);
        }
        const Status finished = remotes.finish();
        for (auto& t : threads) t.join();
        SM_TRY(finished);
        for (const Status& s : served) SM_TRY(s);
        return test::same_generation(got, want, model.config().vocab_size);
      },
      300s);
  for (auto& s : results) CHECK_MESSAGE(s.is_ok(), s.message());
}

#endif  // STARMESH_COMM_NCCL
