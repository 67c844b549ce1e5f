// The NCCL transport on real GPUs: built wherever STARMESH_CUDA is on, run where CUDA
// devices are. Ranks are forked processes, one GPU each (NCCL refuses two ranks of one
// communicator on one device); without enough devices doctest reports the case skipped.
#ifdef STARMESH_COMM_NCCL
#include <cuda_runtime_api.h>
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>

#include "comm/comm_test_support.hpp"
#include "starmesh/comm/nccl_transport.hpp"
#include "starmesh/launch/local_group.hpp"
#include "support/cuda_devices.hpp"

using namespace starmesh;
using namespace std::chrono_literals;
using test::cuda_devices;
using test::expect_bytes;
using test::expect_error;
using test::payload_seed;
using test::random_payload;
using test::receive_buffer;

namespace {

Expected<Tensor> to_device(const Tensor& host, int device) {
  void* p = nullptr;
  if (cudaMalloc(&p, std::max<size_t>(host.nbytes(), 1)) != cudaSuccess) return make_error("cudaMalloc failed");
  Tensor d = Tensor::wrap(p, host.dtype(), host.shape(), Device::cuda(device), std::shared_ptr<void>(p, cudaFree));
  if (cudaMemcpy(p, host.data(), host.nbytes(), cudaMemcpyHostToDevice) != cudaSuccess)
    return make_error("cudaMemcpy to the device failed");
  return d;
}

Expected<Tensor> to_host(const Tensor& device) {
  Tensor h = Tensor::zeros(device.dtype(), device.shape());
  if (cudaMemcpy(h.data(), device.data(), device.nbytes(), cudaMemcpyDeviceToHost) != cudaSuccess)
    return make_error("cudaMemcpy to the host failed");
  return h;
}

// In a child: device `device`, a stream, the unique id from rank 0 through the bootstrap,
// and the communicator; then body(transport, stream).
Status with_nccl(LocalBootstrap& b, int device, const std::function<Status(NcclTransport&)>& body) {
  if (cudaSetDevice(device) != cudaSuccess) return make_error("cudaSetDevice(", device, ") failed");
  cudaStream_t stream = nullptr;
  if (cudaStreamCreate(&stream) != cudaSuccess) return make_error("cudaStreamCreate failed");
  std::vector<uint8_t> id;
  if (b.rank() == 0) {
    SM_ASSIGN(fresh, nccl_unique_id());
    id = std::move(fresh);
  }
  Status s;
  {
    SM_ASSIGN(ids, b.allgather(id));
    SM_ASSIGN(t, NcclTransport::create(b.rank(), b.size(), ids[0], device, stream, deadline_in(60s)));
    s = body(*t);
    Status done = b.barrier();  // nobody tears down while a peer may still be talking to it
    if (s) s = done;
  }
  cudaStreamDestroy(stream);
  return s;
}

// Every byte of a ring of sends, a broadcast and a gather from every root; `dev`: this rank's GPU.
Status check_group(NcclTransport& t, int dev) {
  const int me = t.rank(), n = t.size();
  const int next = (me + 1) % n, prev = (me + n - 1) % n;
  for (size_t bytes : test::kPayloadSizes) {
    SM_ASSIGN(out, to_device(random_payload(bytes, payload_seed(me, next, bytes)), dev));
    SM_ASSIGN(in, to_device(receive_buffer(bytes), dev));
    const Transfer ring[] = {Transfer::send(next, 1, out), Transfer::recv(prev, 1, in)};
    SM_TRY(t.exchange(ring, deadline_in(30s)));
    SM_ASSIGN(got, to_host(in));
    SM_TRY(expect_bytes(got, random_payload(bytes, payload_seed(prev, me, bytes)), "ring " + describe(ring[1])));
  }
  for (int root = 0; root < n; ++root) {
    const size_t bytes = size_t(1) << 20;
    const Tensor want = random_payload(bytes, payload_seed(root, 99, bytes));
    SM_ASSIGN(buf, to_device(me == root ? want : receive_buffer(bytes), dev));
    SM_TRY(t.broadcast(root, 2, buf, deadline_in(30s)));
    SM_ASSIGN(got, to_host(buf));
    SM_TRY(expect_bytes(got, want, "broadcast from " + std::to_string(root)));

    SM_ASSIGN(mine, to_device(random_payload(bytes, payload_seed(me, root, bytes, 2)), dev));
    std::vector<Tensor> outs;
    for (int r = 0; r < n; ++r) {
      SM_ASSIGN(o, to_device(receive_buffer(bytes), dev));
      outs.push_back(o);
    }
    SM_TRY(t.gather(root, 3, mine, outs, deadline_in(30s)));
    if (me == root)
      for (int r = 0; r < n; ++r) {
        SM_ASSIGN(g, to_host(outs[size_t(r)]));
        SM_TRY(expect_bytes(g, random_payload(bytes, payload_seed(r, root, bytes, 2)),
                            "gather from " + std::to_string(r)));
      }
  }
  return expect_error(t.send(next, 4, random_payload(64, 1), deadline_in(1s)), {"is on cpu", "cuda:"}, "host tensor");
}

}  // namespace

TEST_CASE("nccl: a group of one on one GPU - self transfers, broadcast, gather, abort at a deadline (needs 1 GPU)" *
          doctest::skip(cuda_devices() < 1)) {
  auto results = run_local_group(
      1,
      [](LocalBootstrap& b) -> Status {
        return with_nccl(b, 0, [](NcclTransport& t) -> Status {
          SM_TRY(check_group(t, 0));
          // A receive with no matching send never completes: the deadline aborts the communicator.
          SM_ASSIGN(in, to_device(receive_buffer(4096), 0));
          SM_TRY(expect_error(t.recv(0, 5, in, deadline_in(500ms)), {"nccl rank 0"}, "receive without a send"));
          return expect_error(t.recv(0, 5, in, deadline_in(500ms)), {"unusable"}, "after the abort");
        });
      },
      120s);
  for (auto& s : results) CHECK_MESSAGE(s.is_ok(), s.message());
}

TEST_CASE("nccl: a transfer waits for the work queued on the caller's stream (needs 1 GPU)" *
          doctest::skip(cuda_devices() < 1)) {
  // The communicator runs on a stream of its own. The caller's stream is kept busy filling
  // the buffer to send (many large memsets, the last with the value checked): a send that
  // did not wait for them would read a buffer still being filled.
  auto results = run_local_group(
      1,
      [](LocalBootstrap&) -> Status {
        if (cudaSetDevice(0) != cudaSuccess) return make_error("cudaSetDevice(0) failed");
        cudaStream_t compute = nullptr;
        if (cudaStreamCreateWithFlags(&compute, cudaStreamNonBlocking) != cudaSuccess)
          return make_error("cudaStreamCreate failed");
        SM_ASSIGN(fresh, nccl_unique_id());
        SM_ASSIGN(t, NcclTransport::create(0, 1, fresh, 0, compute, deadline_in(60s)));
        const size_t bytes = size_t(256) << 20;
        SM_ASSIGN(out, to_device(receive_buffer(bytes), 0));
        SM_ASSIGN(in, to_device(receive_buffer(bytes), 0));
        Status s;
        for (int round = 0; round < 3 && s; ++round) {
          for (int i = 0; i < 40; ++i) cudaMemsetAsync(out.data(), i % 2 ? 0x11 : 0x22, bytes, compute);
          cudaMemsetAsync(out.data(), 0x5a + round, bytes, compute);
          const Transfer self[] = {Transfer::send(0, 1, out), Transfer::recv(0, 1, in)};
          s = t->exchange(self, deadline_in(30s));
          if (!s) break;
          SM_ASSIGN(got, to_host(in));
          const auto* p = static_cast<const uint8_t*>(got.data());
          for (size_t i = 0; i < bytes; i += 4093)
            if (p[i] != uint8_t(0x5a + round)) {
              s = make_error("round ", round, ": byte ", i, " is ", int(p[i]), ", want ", 0x5a + round,
                             ": the transfer ran before the caller's stream wrote it");
              break;
            }
        }
        t.reset();
        cudaStreamDestroy(compute);
        return s;
      },
      120s);
  for (auto& s : results) CHECK_MESSAGE(s.is_ok(), s.message());
}

TEST_CASE("nccl: 2 processes on 2 GPUs - send/recv 8 B .. 4 MB, broadcast, gather, deadline (needs 2 GPUs)" *
          doctest::skip(cuda_devices() < 2)) {
  auto results = run_local_group(
      2,
      [](LocalBootstrap& b) -> Status {
        return with_nccl(b, b.rank(), [&](NcclTransport& t) -> Status {
          SM_TRY(check_group(t, b.rank()));
          SM_TRY(b.barrier());
          if (t.rank() == 1) return {};  // rank 1 never sends: rank 0's receive meets its deadline
          SM_ASSIGN(in, to_device(receive_buffer(4096), 0));
          const auto start = std::chrono::steady_clock::now();
          SM_TRY(expect_error(t.recv(1, 6, in, deadline_in(500ms)), {"deadline", "recv from peer 1", "aborted"},
                              "unanswered receive"));
          if (std::chrono::steady_clock::now() - start > 10s) return make_error("the abort took over 10 s");
          return expect_error(t.recv(1, 6, in, deadline_in(500ms)), {"unusable"}, "after the abort");
        });
      },
      120s);
  for (auto& s : results) CHECK_MESSAGE(s.is_ok(), s.message());
}

TEST_CASE("nccl: two ranks on one GPU are refused with an error, not a hang (needs 1 GPU)" *
          doctest::skip(cuda_devices() < 1)) {
  auto results = run_local_group(
      2,
      [](LocalBootstrap& b) -> Status {
        Status s = with_nccl(b, 0, [](NcclTransport&) -> Status { return {}; });
        return expect_error(s, {"NCCL create"}, "two ranks on device 0");
      },
      120s);
  for (auto& s : results) CHECK_MESSAGE(s.is_ok(), s.message());
}

#endif  // STARMESH_COMM_NCCL
