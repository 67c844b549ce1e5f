// The in-process transport (one thread per rank) and the collectives built on exchange().
#include <doctest/doctest.h>

#include <chrono>
#include <functional>
#include <thread>

#include "comm/comm_test_support.hpp"
#include "starmesh/comm/in_process_transport.hpp"

using namespace starmesh;
using namespace std::chrono_literals;
using test::expect_bytes;
using test::expect_error;
using test::payload_seed;
using test::random_payload;
using test::receive_buffer;

namespace {

// Runs body(transport) on one thread per rank; every rank's Status is checked.
void run_ranks(InProcessFabric& fabric, const std::function<Status(transport_i&)>& body) {
  std::vector<Status> results(size_t(fabric.size()));
  std::vector<std::thread> threads;
  for (int r = 0; r < fabric.size(); ++r)
    threads.emplace_back([&, r] { results[size_t(r)] = body(fabric.endpoint(r)); });
  for (auto& t : threads) t.join();
  for (int r = 0; r < fabric.size(); ++r)
    CHECK_MESSAGE(results[size_t(r)].is_ok(), "rank ", r, ": ", results[size_t(r)].message());
}

}  // namespace

TEST_CASE("in-process: send/recv of 8 B .. 4 MB around a ring, every byte") {
  InProcessFabric fabric(4);
  run_ranks(fabric, [](transport_i& t) -> Status {
    const int next = (t.rank() + 1) % t.size(), prev = (t.rank() + t.size() - 1) % t.size();
    for (size_t bytes : test::kPayloadSizes) {
      SM_TRY(t.send(next, 7, random_payload(bytes, payload_seed(t.rank(), next, bytes)), deadline_in(5s)));
      Tensor got = receive_buffer(bytes);
      SM_TRY(t.recv(prev, 7, got, deadline_in(5s)));
      SM_TRY(expect_bytes(got, random_payload(bytes, payload_seed(prev, t.rank(), bytes)), "ring message"));
    }
    return {};
  });
}

TEST_CASE("in-process: all-to-all in one exchange, same-tag messages keep their order") {
  InProcessFabric fabric(4);
  run_ranks(fabric, [](transport_i& t) -> Status {
    std::vector<Transfer> batch;
    std::vector<Tensor> want;
    for (int p = 0; p < t.size(); ++p) {
      for (int round = 0; round < 2; ++round) {  // two messages per pair under one tag
        batch.push_back(Transfer::send(p, 3, random_payload(4096, payload_seed(t.rank(), p, 4096, round))));
        batch.push_back(Transfer::recv(p, 3, receive_buffer(4096)));
        want.push_back(random_payload(4096, payload_seed(p, t.rank(), 4096, round)));
      }
    }
    SM_TRY(t.exchange(batch, deadline_in(5s)));
    size_t k = 0;
    for (const Transfer& x : batch)
      if (x.kind == TransferKind::recv) SM_TRY(expect_bytes(x.tensor, want[k++], describe(x)));
    return {};
  });
}

TEST_CASE("in-process: broadcast and gather from every root") {
  InProcessFabric fabric(4);
  run_ranks(fabric, [](transport_i& t) -> Status {
    for (int root = 0; root < t.size(); ++root) {
      const size_t bytes = 16384;
      Tensor b = t.rank() == root ? random_payload(bytes, payload_seed(root, -1, bytes)) : receive_buffer(bytes);
      SM_TRY(t.broadcast(root, 11, b, deadline_in(5s)));
      SM_TRY(expect_bytes(b, random_payload(bytes, payload_seed(root, -1, bytes)), "broadcast"));

      Tensor mine = random_payload(bytes, payload_seed(t.rank(), root, bytes, 1));
      std::vector<Tensor> out;
      for (int r = 0; r < t.size(); ++r) out.push_back(receive_buffer(bytes));
      SM_TRY(t.gather(root, 12, mine, out, deadline_in(5s)));
      if (t.rank() == root)
        for (int r = 0; r < t.size(); ++r)
          SM_TRY(expect_bytes(out[size_t(r)], random_payload(bytes, payload_seed(r, root, bytes, 1)), "gather"));
    }
    return {};
  });
}

TEST_CASE("in-process: a receive nobody answers fails at its deadline, naming peer, tag and time") {
  InProcessFabric fabric(2);
  Tensor into = receive_buffer(64);
  const auto start = std::chrono::steady_clock::now();
  Status s = fabric.endpoint(0).recv(1, 42, into, deadline_in(150ms));
  const auto waited = std::chrono::steady_clock::now() - start;
  CHECK(waited >= 150ms);
  CHECK(waited < 2s);
  Status e = expect_error(s, {"deadline", "peer 1", "tag 42", " ms"}, "unanswered receive");
  CHECK_MESSAGE(e.is_ok(), e.message());
}

TEST_CASE("in-process: a message of the wrong size is an error naming both sizes and the group goes on") {
  InProcessFabric fabric(2);
  transport_i& a = fabric.endpoint(0);
  transport_i& b = fabric.endpoint(1);
  REQUIRE(a.send(1, 5, random_payload(1000, 1), deadline_in(1s)));
  Tensor small = receive_buffer(800);
  Status e = expect_error(b.recv(0, 5, small, deadline_in(1s)), {"1000 B", "800 B", "peer 0", "tag 5"}, "wrong size");
  CHECK_MESSAGE(e.is_ok(), e.message());
  REQUIRE(a.send(1, 5, random_payload(800, 2), deadline_in(1s)));
  REQUIRE(b.recv(0, 5, small, deadline_in(1s)));
  CHECK(test::byte_difference(small, random_payload(800, 2)) == "");
}

TEST_CASE("in-process: device tensors and unknown ranks are refused") {
  InProcessFabric fabric(2);
  float host[4] = {1, 2, 3, 4};
  Tensor fake_device = Tensor::wrap(host, DType::f32, {4}, Device::cuda(0), nullptr);
  Status e = expect_error(fabric.endpoint(0).send(1, 1, fake_device, deadline_in(1s)), {"host tensors only", "cuda:0"},
                          "device tensor");
  CHECK_MESSAGE(e.is_ok(), e.message());
  e = expect_error(fabric.endpoint(0).send(2, 1, random_payload(8, 1), deadline_in(1s)), {"no such rank"}, "rank 2");
  CHECK_MESSAGE(e.is_ok(), e.message());
  std::vector<Tensor> out(1);
  e = expect_error(fabric.endpoint(0).gather(0, 1, random_payload(8, 1), out, deadline_in(1s)),
                   {"one output tensor per rank"}, "gather outputs");
  CHECK_MESSAGE(e.is_ok(), e.message());
}

TEST_CASE("in-process: a cancel ends a receive long before its deadline") {
  InProcessFabric fabric(2);
  std::atomic<bool> stop{false};
  transport_i& t = fabric.endpoint(0);
  t.cancel_on(&stop);
  std::thread canceller([&] {
    std::this_thread::sleep_for(100ms);
    stop = true;
  });
  Tensor into = receive_buffer(64);
  const auto start = std::chrono::steady_clock::now();
  Status s = t.recv(1, 9, into, deadline_in(30s));
  const auto waited = std::chrono::steady_clock::now() - start;
  canceller.join();
  CHECK(waited < 2s);
  Status e = expect_error(s, {"cancelled", "peer 1", "tag 9"}, "cancelled receive");
  CHECK_MESSAGE(e.is_ok(), e.message());
  t.cancel_on(nullptr);  // the flag no longer applies: the group goes on
  REQUIRE(fabric.endpoint(1).send(0, 9, random_payload(64, 3), deadline_in(1s)));
  CHECK(t.recv(1, 9, into, deadline_in(1s)));
}
