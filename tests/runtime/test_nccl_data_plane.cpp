// The NCCL data plane on real GPUs: built wherever STARMESH_CUDA is on, run where CUDA
// devices are (bench/run_h200.sh --nccl). Every case runs in forked children, one GPU each:
// NCCL refuses two ranks of one communicator on one device. Without the devices doctest
// reports the case skipped.
#ifdef STARMESH_COMM_NCCL
#include <doctest/doctest.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "starmesh/attention/block_plan.hpp"
#include "starmesh/backend/cuda_backend.hpp"
#include "starmesh/launch/local_group.hpp"
#include "starmesh/runtime/data_plane.hpp"
#include "starmesh/runtime/remote_shards.hpp"
#include "starmesh/runtime/shard_server.hpp"
#include "support/apart_shards.hpp"
#include "support/cuda_devices.hpp"
#include "support/engine_reference.hpp"

using namespace starmesh;
using namespace std::chrono_literals;
using test::cuda_devices;

namespace {

const UcxOptions kLoopback{.transports = "tcp", .net_devices = "lo"};

MessageKey test_key() {
  MessageKey k;
  k.fill(0x42);
  return k;
}

Tensor counting(int64_t n, float from) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = from + float(i % 4099);
  return Tensor::from_f32(v, {n});
}

Status expect_same(const Tensor& got, const Tensor& want, const std::string& what) {
  if (got.nbytes() != want.nbytes() || std::memcmp(got.data(), want.data(), want.nbytes()) != 0)
    return make_error(what, ": the bytes differ");
  return {};
}

// Rank `rank`'s side of one request over the NCCL data plane: the group's addresses through
// the bootstrap, then the request's transport.
Expected<std::unique_ptr<transport_i>> join_group(LocalBootstrap& b, data_plane_i& plane, uint64_t request) {
  SM_ASSIGN(addresses, b.allgather(plane.address()));
  return plane.join(request, b.rank(), addresses, test_key());
}

}  // namespace

TEST_CASE(
    "nccl data plane: a group of one on one GPU - tensors after the backend's work, host messages, two requests at "
    "once (needs 1 GPU)" *
    doctest::skip(cuda_devices() < 1)) {
  auto results = run_local_group(
      1,
      [](LocalBootstrap& b) -> Status {
        SM_ASSIGN(be, CudaBackend::create(0));
        SM_ASSIGN(plane, make_nccl_data_plane(kLoopback, 0, be->stream()));
        if (plane->name() != "nccl") return make_error("the plane is '", plane->name(), "'");
        SM_ASSIGN(first, join_group(b, *plane, 1));
        SM_ASSIGN(second, join_group(b, *plane, 2));  // a second request's communicator beside the first
        if (!first->carries_device_memory()) return make_error("the NCCL plane's transport must carry device memory");
        // The tensor to send is written by the backend on its stream, last of a long chain of
        // copies: a transfer that did not follow the backend's stream would read it early.
        const int64_t n = int64_t(64) << 20;  // 256 MB of f32
        const Tensor want = counting(n, 1.0f);
        SM_ASSIGN(src, be->upload(want, DType::f32));
        SM_ASSIGN(decoy, be->upload(counting(n, -7.0f), DType::f32));
        SM_ASSIGN(out, be->alloc(DType::f32, {n}));
        SM_ASSIGN(in, be->alloc(DType::f32, {n}));
        for (int i = 0; i < 30; ++i) SM_TRY(be->copy(decoy, out));
        SM_TRY(be->copy(src, out));
        const Tensor header = Tensor::from_i32(std::vector<int32_t>{1, 2, 3, 4}, {4});
        Tensor header_in = Tensor::zeros(DType::i32, {4});
        const Transfer batch[] = {Transfer::send(0, 9, out), Transfer::recv(0, 9, in), Transfer::send(0, 9, header),
                                  Transfer::recv(0, 9, header_in)};
        SM_TRY(first->exchange(batch, deadline_in(30s)));
        SM_ASSIGN(got, be->download(in));
        SM_TRY(expect_same(got, want, "the device message"));
        SM_TRY(expect_same(header_in, header, "the host message"));
        // The second request's group works as well, on its own communicator.
        SM_ASSIGN(small_in, be->alloc(DType::f32, {1024}));
        const Transfer small[] = {Transfer::send(0, 1, src.rows(0, 1024)), Transfer::recv(0, 1, small_in)};
        SM_TRY(second->exchange(small, deadline_in(30s)));
        SM_ASSIGN(small_got, be->download(small_in));
        return expect_same(small_got, counting(1024, 1.0f), "the second request's message");
      },
      180s);
  for (auto& s : results) CHECK_MESSAGE(s.is_ok(), s.message());
}

TEST_CASE(
    "nccl data plane: phase 2 between 2 processes on 2 GPUs equals the star engine in one process (needs 2 GPUs)" *
    doctest::skip(cuda_devices() < 2)) {
  // Rank 0 holds block 0 and serves its partials; rank 1 is the query host. Its logits must be
  // those of the same plan run in one process on its GPU (test::ApartShards): the same kernels,
  // merged in the same order, bit for bit.
  auto results = run_local_group(
      2,
      [](LocalBootstrap& b) -> Status {
        const int rank = b.rank();
        SM_ASSIGN(be, CudaBackend::create(rank));
        SM_ASSIGN(model, Transformer::load(*be, STARMESH_GOLDEN_MODEL_DIR));
        const auto ctx = test::random_token_ids(600, 11), query = test::random_token_ids(5, 12);
        const int max_new = 8;
        SM_ASSIGN(plan, plan_blocks(int64_t(ctx.size()), 256, -1, 2));
        SM_ASSIGN(mine, encode_host(model, plan, rank, ctx));
        SM_ASSIGN(plane, make_nccl_data_plane(kLoopback, rank, be->stream()));
        SM_ASSIGN(t, join_group(b, *plane, 7));
        if (rank == 0) {
          MutexComputeLock compute;
          std::atomic<bool> stop{false};
          SM_ASSIGN(served, serve_shard(model, mine.cache, *t, compute, stop, ShardServerOptions{}));
          if (served.steps < 1) return make_error("the shard host served no step");
          return b.barrier();
        }
        const int64_t capacity = int64_t(query.size()) + max_new;
        SM_ASSIGN(host, QueryHost::create(model, std::move(mine), int64_t(ctx.size()), capacity));
        RemoteShards remotes(model, *t, {"rank 0"}, 30s);
        const test::Reference got = test::record_generation(
            model, query, max_new, [&](std::span<const int32_t> x) { return host.step(x, remotes); });
        SM_TRY(remotes.finish());
        SM_TRY(b.barrier());
        // The same plan in this process: block 0 encoded here too, its partials asked directly.
        SM_ASSIGN(block0, encode_host(model, plan, 0, ctx));
        SM_ASSIGN(mine_again, encode_host(model, plan, 1, ctx));
        SM_ASSIGN(local, QueryHost::create(model, std::move(mine_again), int64_t(ctx.size()), capacity));
        test::ApartShards here(model, {&block0});
        const test::Reference want = test::record_generation(
            model, query, max_new, [&](std::span<const int32_t> x) { return local.step(x, here); });
        return test::same_generation(got, want, model.config().vocab_size);
      },
      300s);
  for (auto& s : results) CHECK_MESSAGE(s.is_ok(), s.message());
}

#endif  // STARMESH_COMM_NCCL
