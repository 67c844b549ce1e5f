// SplitTransport (the NCCL data plane's shape) on the CPU: the device half is an in-process
// fabric that takes tensors labelled as GPU memory (host bytes under a cuda:0 label), so the
// routing by memory, the concurrency of the two halves and the errors are checked without a GPU.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <thread>

#include "comm/comm_test_support.hpp"
#include "starmesh/comm/in_process_transport.hpp"
#include "starmesh/comm/split_transport.hpp"
#include "support/forwarding_endpoint.hpp"

using namespace starmesh;
using namespace std::chrono_literals;
using test::expect_bytes;
using test::expect_error;
using test::random_payload;
using test::receive_buffer;

namespace {

// The same bytes, labelled as memory of cuda:0.
Tensor as_device(const Tensor& host) {
  auto keep = std::make_shared<Tensor>(host);
  return Tensor::wrap(host.data(), host.dtype(), host.shape(), Device::cuda(0), keep);
}

// A fabric endpoint that carries "device" tensors: it refuses host ones (so that a host
// tensor routed here fails) and counts what it moved.
class LabelledDeviceEndpoint final : public test::ForwardingEndpoint {
 public:
  LabelledDeviceEndpoint(transport_i& fabric, std::atomic<int>& moved)
      : ForwardingEndpoint(fabric, true), moved_(moved) {}
  std::string name() const override { return "labelled-device"; }
  Status exchange(std::span<const Transfer> transfers, Deadline deadline) override {
    std::vector<Transfer> host;
    for (const Transfer& t : transfers) {
      if (t.tensor.device().kind != DeviceKind::cuda) return make_error("device half: got a host tensor");
      Transfer h = t;
      h.tensor = Tensor::wrap(t.tensor.data(), t.tensor.dtype(), t.tensor.shape(), Device::cpu(),
                              std::make_shared<Tensor>(t.tensor));
      host.push_back(h);
    }
    moved_ += int(transfers.size());
    return fabric_.exchange(host, deadline);
  }

 private:
  std::atomic<int>& moved_;
};

// A fabric endpoint, owned by its fabric, handed to a split transport that owns its halves.
using Forward = test::ForwardingEndpoint;

// A group of `size` split ranks over two fabrics; body(rank's transport) on a thread each.
struct SplitGroup {
  explicit SplitGroup(int size) : host(size), device(size) {}
  InProcessFabric host, device;
  std::atomic<int> device_moved{0};

  std::unique_ptr<SplitTransport> rank(int r) {
    return SplitTransport::create(std::make_unique<Forward>(host.endpoint(r)),
                                  std::make_unique<LabelledDeviceEndpoint>(device.endpoint(r), device_moved))
        .value();
  }

  void run(const std::function<Status(transport_i&)>& body) {
    std::vector<std::unique_ptr<SplitTransport>> ranks;
    for (int r = 0; r < host.size(); ++r) ranks.push_back(rank(r));
    std::vector<Status> results(ranks.size());
    std::vector<std::thread> threads;
    for (size_t r = 0; r < ranks.size(); ++r) threads.emplace_back([&, r] { results[r] = body(*ranks[r]); });
    for (auto& t : threads) t.join();
    for (size_t r = 0; r < results.size(); ++r)
      CHECK_MESSAGE(results[r].is_ok(), "rank ", r, ": ", results[r].message());
  }
};

}  // namespace

TEST_CASE("split transport: host tensors go through the host half, device tensors through the device half") {
  SplitGroup g(2);
  g.run([](transport_i& t) -> Status {
    if (!t.carries_device_memory()) return make_error("a split transport carries device memory");
    const int peer = 1 - t.rank();
    const Tensor host_out = random_payload(4096, 10 + uint64_t(t.rank()));
    const Tensor dev_out = random_payload(1 << 20, 20 + uint64_t(t.rank()));
    Tensor host_in = receive_buffer(4096), dev_in = receive_buffer(1 << 20);
    // One batch of both kinds, same tag: only the memory tells them apart.
    const Transfer batch[] = {Transfer::send(peer, 3, host_out), Transfer::send(peer, 3, as_device(dev_out)),
                              Transfer::recv(peer, 3, host_in), Transfer::recv(peer, 3, as_device(dev_in))};
    SM_TRY(t.exchange(batch, deadline_in(5s)));
    SM_TRY(expect_bytes(host_in, random_payload(4096, 10 + uint64_t(peer)), "host message"));
    return expect_bytes(dev_in, random_payload(1 << 20, 20 + uint64_t(peer)), "device message");
  });
  CHECK(g.device_moved.load() == 4);  // two transfers a rank, both device ones; none of the host ones
}

TEST_CASE("split transport: the two halves of a batch run at once (one waiting on the other's peer does not stall)") {
  // Rank 0's batch waits on a host message that rank 1 sends only after it received rank 0's
  // device message: run one half after the other and this stalls until the deadline.
  SplitGroup g(2);
  g.run([](transport_i& t) -> Status {
    Tensor host_buf = receive_buffer(64), dev_buf = receive_buffer(64);
    if (t.rank() == 0) {
      const Transfer batch[] = {Transfer::recv(1, 1, host_buf), Transfer::send(1, 2, as_device(random_payload(64, 5)))};
      SM_TRY(t.exchange(batch, deadline_in(3s)));
      return expect_bytes(host_buf, random_payload(64, 6), "host reply");
    }
    SM_TRY(t.recv(0, 2, as_device(dev_buf), deadline_in(3s)));
    SM_TRY(expect_bytes(dev_buf, random_payload(64, 5), "device message"));
    return t.send(0, 1, random_payload(64, 6), deadline_in(3s));
  });
}

TEST_CASE("split transport: an error of either half fails the batch, and a cancel reaches both halves") {
  SplitGroup g(2);
  auto t0 = g.rank(0);
  // Nobody sends: the device half meets its deadline, while the host half's send succeeded.
  const Transfer batch[] = {Transfer::send(1, 1, random_payload(64, 1)),
                            Transfer::recv(1, 2, as_device(receive_buffer(64)))};
  CHECK(expect_error(t0->exchange(batch, deadline_in(100ms)), {"recv from peer 1"}, "device half").is_ok());
  const Transfer host_only[] = {Transfer::recv(1, 3, receive_buffer(64))};
  CHECK(expect_error(t0->exchange(host_only, deadline_in(100ms)), {"recv from peer 1"}, "host half").is_ok());
  // Cancelled: both halves, each waiting on a receive, end at once, long before their deadline.
  std::atomic<bool> stop{true};
  t0->cancel_on(&stop);
  const auto start = std::chrono::steady_clock::now();
  const Transfer waits[] = {Transfer::recv(1, 4, receive_buffer(64)),
                            Transfer::recv(1, 5, as_device(receive_buffer(64)))};
  const Status s = t0->exchange(waits, deadline_in(10s));
  CHECK(s.code() == ErrorCode::cancelled);
  CHECK(std::chrono::steady_clock::now() - start < 5s);
}

TEST_CASE("split transport: the halves must be one rank of one group, the device half must carry device memory") {
  InProcessFabric a(2), b(3);
  CHECK(expect_error(SplitTransport::create(std::make_unique<Forward>(a.endpoint(0)),
                                            std::make_unique<Forward>(b.endpoint(0), true))
                         .status(),
                     {"rank 0 of 2", "rank 0 of 3"}, "sizes differ")
            .is_ok());
  CHECK(expect_error(SplitTransport::create(std::make_unique<Forward>(a.endpoint(0)),
                                            std::make_unique<Forward>(a.endpoint(1), true))
                         .status(),
                     {"rank 0 of 2", "rank 1 of 2"}, "ranks differ")
            .is_ok());
  CHECK(expect_error(SplitTransport::create(std::make_unique<Forward>(a.endpoint(0)),
                                            std::make_unique<Forward>(a.endpoint(0), false))
                         .status(),
                     {"does not carry device memory"}, "a host transport as the device half")
            .is_ok());
}
