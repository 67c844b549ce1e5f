// The UCX transport between real processes on 127.0.0.1, over TCP and over shared memory:
// every test forks its ranks (run_local_group), which exchange worker addresses through
// the parent and check every byte themselves; the parent checks every rank's verdict.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#include "comm/comm_test_support.hpp"
#include "starmesh/comm/ucx_transport.hpp"
#include "starmesh/launch/local_group.hpp"

using namespace starmesh;
using namespace std::chrono_literals;
using test::expect_bytes;
using test::expect_error;
using test::payload_seed;
using test::random_payload;
using test::receive_buffer;

namespace {

const char* const kTransports[] = {"tcp", "shm"};

void run_ucx_group(int size, const std::string& transports,
                   const std::function<Status(UcxTransport&, LocalBootstrap&)>& body) {
  auto results = run_local_group(
      size,
      [&](LocalBootstrap& b) -> Status {
        SM_ASSIGN(t, connect_ucx(b, UcxOptions{.transports = transports, .net_devices = "lo"}));
        Status s = body(*t, b);
        // Nobody tears down while a peer may still be talking to it.
        Status done = b.barrier();
        return s ? done : s;
      },
      15s);
  for (size_t r = 0; r < results.size(); ++r)
    CHECK_MESSAGE(results[r].is_ok(), transports, " rank ", r, ": ", results[r].message());
}

}  // namespace

TEST_CASE("ucx: 4 processes, send/recv of 8 B .. 4 MB around a ring and all-to-all, every byte") {
  for (const char* tls : kTransports) {
    CAPTURE(tls);
    run_ucx_group(4, tls, [](UcxTransport& t, LocalBootstrap&) -> Status {
      const int next = (t.rank() + 1) % t.size(), prev = (t.rank() + t.size() - 1) % t.size();
      for (size_t bytes : test::kPayloadSizes) {
        const Transfer ring[] = {Transfer::send(next, 1, random_payload(bytes, payload_seed(t.rank(), next, bytes))),
                                 Transfer::recv(prev, 1, receive_buffer(bytes))};
        SM_TRY(t.exchange(ring, deadline_in(10s)));
        SM_TRY(expect_bytes(ring[1].tensor, random_payload(bytes, payload_seed(prev, t.rank(), bytes)),
                            "ring " + describe(ring[1])));
      }
      for (size_t bytes : {size_t(8), size_t(65536), size_t(1) << 20}) {
        std::vector<Transfer> batch;  // to and from every rank, self included, at once
        for (int p = 0; p < t.size(); ++p) {
          batch.push_back(Transfer::send(p, 2, random_payload(bytes, payload_seed(t.rank(), p, bytes, 1))));
          batch.push_back(Transfer::recv(p, 2, receive_buffer(bytes)));
        }
        SM_TRY(t.exchange(batch, deadline_in(10s)));
        for (const Transfer& x : batch)
          if (x.kind == TransferKind::recv)
            SM_TRY(expect_bytes(x.tensor, random_payload(bytes, payload_seed(x.peer, t.rank(), bytes, 1)),
                                "all-to-all " + describe(x)));
      }
      return {};
    });
  }
}

TEST_CASE("ucx: 4 processes, broadcast and gather from every root, every byte") {
  for (const char* tls : kTransports) {
    CAPTURE(tls);
    run_ucx_group(4, tls, [](UcxTransport& t, LocalBootstrap&) -> Status {
      for (size_t bytes : {size_t(8), size_t(16384), size_t(4) << 20}) {
        for (int root = 0; root < t.size(); ++root) {
          const Tensor want = random_payload(bytes, payload_seed(root, 99, bytes));
          Tensor b = t.rank() == root ? want.clone() : receive_buffer(bytes);
          SM_TRY(t.broadcast(root, 3, b, deadline_in(10s)));
          SM_TRY(expect_bytes(b, want, "broadcast from " + std::to_string(root)));

          std::vector<Tensor> out;
          for (int r = 0; r < t.size(); ++r) out.push_back(receive_buffer(bytes));
          SM_TRY(
              t.gather(root, 4, random_payload(bytes, payload_seed(t.rank(), root, bytes, 2)), out, deadline_in(10s)));
          if (t.rank() == root)
            for (int r = 0; r < t.size(); ++r)
              SM_TRY(expect_bytes(out[size_t(r)], random_payload(bytes, payload_seed(r, root, bytes, 2)),
                                  "gather from rank " + std::to_string(r)));
        }
      }
      return {};
    });
  }
}

TEST_CASE("ucx: a receive nobody answers fails at its deadline and the group goes on") {
  for (const char* tls : kTransports) {
    CAPTURE(tls);
    run_ucx_group(2, tls, [](UcxTransport& t, LocalBootstrap& b) -> Status {
      if (t.rank() == 0) {
        Tensor into = receive_buffer(4096);
        const auto start = std::chrono::steady_clock::now();
        Status s = t.recv(1, 77, into, deadline_in(300ms));
        const auto waited = std::chrono::steady_clock::now() - start;
        SM_TRY(expect_error(s, {"deadline", "peer 1", "tag 77", "nothing arrived"}, "unanswered receive"));
        if (waited < 300ms || waited > 3s)
          return make_error("the receive gave up after ", waited.count() / 1000000, " ms");
      }
      SM_TRY(b.barrier());
      // The cancelled receive must not swallow the next message under the same tag.
      const Tensor want = random_payload(4096, 5);
      if (t.rank() == 1) return t.send(0, 77, want, deadline_in(5s));
      Tensor into = receive_buffer(4096);
      SM_TRY(t.recv(1, 77, into, deadline_in(5s)));
      return expect_bytes(into, want, "message after the cancelled receive");
    });
  }
}

TEST_CASE("ucx: a cancel ends a receive long before its deadline") {
  for (const char* tls : kTransports) {
    CAPTURE(tls);
    run_ucx_group(2, tls, [](UcxTransport& t, LocalBootstrap& b) -> Status {
      if (t.rank() == 0) {
        std::atomic<bool> stop{false};
        t.cancel_on(&stop);
        std::thread canceller([&] {
          std::this_thread::sleep_for(200ms);
          stop = true;
        });
        Tensor into = receive_buffer(4096);
        const auto start = std::chrono::steady_clock::now();
        Status s = t.recv(1, 78, into, deadline_in(30s));
        const auto waited = std::chrono::steady_clock::now() - start;
        canceller.join();
        t.cancel_on(nullptr);
        SM_TRY(expect_error(s, {"cancelled", "peer 1", "tag 78"}, "cancelled receive"));
        if (waited > 3s) return make_error("the cancelled receive waited ", waited.count() / 1000000, " ms");
      }
      return b.barrier();
    });
  }
}

TEST_CASE("ucx: a 4 MB send nobody takes fails at its deadline and closes that peer only") {
  for (const char* tls : kTransports) {
    CAPTURE(tls);
    run_ucx_group(3, tls, [](UcxTransport& t, LocalBootstrap& b) -> Status {
      if (t.rank() == 0) {
        Status s = t.send(1, 8, random_payload(4 << 20, 6), deadline_in(300ms));
        SM_TRY(expect_error(s, {"deadline", "send to peer 1", "tag 8"}, "untaken send"));
        // That peer is now closed, loudly; the others still work.
        SM_TRY(expect_error(t.send(1, 9, random_payload(8, 7), deadline_in(1s)), {"peer 1 is unusable"},
                            "send after the timeout"));
        SM_TRY(t.send(2, 9, random_payload(64, 8), deadline_in(5s)));
      } else if (t.rank() == 2) {
        Tensor into = receive_buffer(64);
        SM_TRY(t.recv(0, 9, into, deadline_in(5s)));
        SM_TRY(expect_bytes(into, random_payload(64, 8), "message to the healthy peer"));
      }
      return b.barrier();
    });
  }
}

TEST_CASE("ucx: a message of the wrong size is an error naming both sizes and the group goes on") {
  for (const char* tls : kTransports) {
    CAPTURE(tls);
    run_ucx_group(2, tls, [](UcxTransport& t, LocalBootstrap&) -> Status {
      struct Case {
        size_t sent, expected;
      };
      const Case cases[] = {{1000, 800}, {600, 800}, {size_t(1) << 20, size_t(512) << 10}, {65536, size_t(1) << 20}};
      uint64_t tag = 20;
      for (const Case& c : cases) {
        ++tag;
        if (t.rank() == 1) {
          SM_TRY(t.send(0, tag, random_payload(c.sent, tag), deadline_in(5s)));
        } else {
          Tensor into = receive_buffer(c.expected);
          Status s = t.recv(1, tag, into, deadline_in(5s));
          const std::string sent = std::to_string(c.sent) + " B", want = std::to_string(c.expected) + " B";
          SM_TRY(expect_error(s, {"the message has " + sent, "expects " + want, "peer 1"}, "wrong size"));
        }
      }
      // Still usable both ways.
      const Tensor want = random_payload(4096, 11);
      if (t.rank() == 1) return t.send(0, 30, want, deadline_in(5s));
      Tensor into = receive_buffer(4096);
      SM_TRY(t.recv(1, 30, into, deadline_in(5s)));
      return expect_bytes(into, want, "message after the size errors");
    });
  }
}

TEST_CASE("ucx: a message far larger than its receive is not taken, and cuts its peer off") {
  // A peer announcing 8 MB to a receive of 4 KB: the receiver allocates nothing of that size
  // (the message is never taken), fails naming both sizes, and trusts that peer no more.
  for (const char* tls : kTransports) {
    CAPTURE(tls);
    run_ucx_group(2, tls, [](UcxTransport& t, LocalBootstrap&) -> Status {
      if (t.rank() == 1) {
        Status s = t.send(0, 40, random_payload(size_t(8) << 20, 40), deadline_in(2s));
        return s ? make_error("the 8 MB send should not complete") : Status{};
      }
      Tensor into = receive_buffer(4096);
      SM_TRY(expect_error(t.recv(1, 40, into, deadline_in(5s)), {"the message has 8388608 B", "not received", "peer 1"},
                          "oversized"));
      return expect_error(t.send(1, 41, random_payload(8, 41), deadline_in(1s)), {"unusable", "8388608 B"},
                          "after the oversized message");
    });
  }
}

TEST_CASE("ucx: two groups on one context keep their messages apart (ids 2^16 apart too) and bad input is refused") {
  auto results = run_local_group(
      2,
      [](LocalBootstrap& b) -> Status {
        SM_ASSIGN(context, UcxContext::create({.transports = "shm"}));
        SM_ASSIGN(addresses, b.allgather(context.local_address()));
        SM_ASSIGN(g1, context.connect(b.rank(), 2, addresses, test::fixed_key(), 1));
        // Each group its own session: one (key, session) in two groups would repeat nonces.
        // 2^16 + 1: ids that far apart are distinct (group ids have 20 bits).
        const uint32_t second = (1u << 16) + 1;
        SM_ASSIGN(g2, context.connect(b.rank(), 2, addresses, test::fixed_key(7, 2), second));
        SM_TRY(expect_error(context.connect(b.rank(), 2, addresses, test::fixed_key(7, 3), second).status(),
                            {"group 65537 is already live"}, "duplicate group"));
        SM_TRY(expect_error(context.connect(b.rank(), 2, addresses, test::fixed_key(7, 4), kMaxUcxGroupId + 1).status(),
                            {"group id 1048576 is not in 0..1048575"}, "group id too large"));
        SM_TRY(expect_error(g1->send(1 - b.rank(), uint64_t(1) << 33, random_payload(8, 1), deadline_in(1s)),
                            {"32 bits"}, "tag too large"));
        float host[2] = {1, 2};
        SM_TRY(expect_error(
            g1->send(1 - b.rank(), 1, Tensor::wrap(host, DType::f32, {2}, Device::cuda(0), nullptr), deadline_in(1s)),
            {"host memory only", "cuda:0"}, "device tensor"));
        if (b.rank() == 0) {  // same tag on both groups; the receiver takes group 2 first
          SM_TRY(g1->send(1, 5, random_payload(256, 1), deadline_in(5s)));
          SM_TRY(g2->send(1, 5, random_payload(256, 2), deadline_in(5s)));
        } else {
          Tensor x = receive_buffer(256), y = receive_buffer(256);
          SM_TRY(g2->recv(0, 5, y, deadline_in(5s)));
          SM_TRY(g1->recv(0, 5, x, deadline_in(5s)));
          SM_TRY(expect_bytes(x, random_payload(256, 1), "group 1"));
          SM_TRY(expect_bytes(y, random_payload(256, 2), "group 2"));
        }
        return b.barrier();
      },
      15s);
  for (auto& s : results) CHECK_MESSAGE(s.is_ok(), s.message());
}

TEST_CASE("ucx: groups made in different orders, one closed on one side: rendezvous in the other still completes") {
  // UCX pairs two workers' endpoints in the order each side made them. With endpoints per
  // group, rank 0's endpoint of group 1 was paired with rank 1's of group 2; once rank 1
  // closed group 2, a rendezvous message of group 1 (1 MB) waited for a reply from a closed
  // endpoint forever (the mesh's stall with several requests at once).
  for (const char* tls : kTransports) {
    CAPTURE(tls);
    auto results = run_local_group(
        2,
        [&](LocalBootstrap& b) -> Status {
          SM_ASSIGN(context, UcxContext::create({.transports = tls, .net_devices = "lo"}));
          SM_ASSIGN(addresses, b.allgather(context.local_address()));
          const int me = b.rank(), other = 1 - b.rank();
          std::unique_ptr<UcxTransport> g1, g2;
          auto make = [&](uint16_t id) { return context.connect(me, 2, addresses, test::fixed_key(9, id), id); };
          if (me == 0) {
            SM_ASSIGN(a, make(1));
            SM_ASSIGN(c, make(2));
            g1 = std::move(a), g2 = std::move(c);
          } else {
            SM_ASSIGN(c, make(2));
            SM_ASSIGN(a, make(1));
            g1 = std::move(a), g2 = std::move(c);
          }
          for (UcxTransport* g : {g2.get(), g1.get()}) {  // both connected both ways
            const Transfer hello[] = {Transfer::send(other, 1, random_payload(8, 1)),
                                      Transfer::recv(other, 1, receive_buffer(8))};
            SM_TRY(g->exchange(hello, deadline_in(5s)));
          }
          if (me == 1) g2.reset();
          SM_TRY(b.barrier());
          const size_t bytes = size_t(1) << 20;
          const Transfer big[] = {Transfer::send(other, 2, random_payload(bytes, payload_seed(me, other, bytes))),
                                  Transfer::recv(other, 2, receive_buffer(bytes))};
          SM_TRY(g1->exchange(big, deadline_in(5s)));
          SM_TRY(expect_bytes(big[1].tensor, random_payload(bytes, payload_seed(other, me, bytes)), "group 1"));
          return b.barrier();
        },
        30s);
    for (auto& s : results) CHECK_MESSAGE(s.is_ok(), s.message());
  }
}

TEST_CASE("ucx: options are checked") {
  auto results = run_local_group(
      1,
      [](LocalBootstrap&) -> Status {
        SM_TRY(expect_error(UcxContext::create({.transports = "carrier-pigeon"}).status(), {"tcp, shm, auto"},
                            "unknown transports"));
        SM_ASSIGN(context, UcxContext::create({.transports = "tcp"}));
        if (context.describe() != "UCX_TLS=tcp,self UCX_NET_DEVICES=lo")
          return make_error("describe() says ", context.describe());
        SM_TRY(expect_error(context.connect(0, 2, {context.local_address()}, test::fixed_key()).status(),
                            {"1 addresses for a group of 2"}, "address count"));
        // A group of one talks to itself.
        SM_ASSIGN(solo, context.connect(0, 1, {context.local_address()}, test::fixed_key()));
        Tensor b = random_payload(1024, 3);
        SM_TRY(solo->broadcast(0, 1, b, deadline_in(1s)));
        std::vector<Tensor> out = {receive_buffer(1024)};
        SM_TRY(solo->gather(0, 1, b, out, deadline_in(1s)));
        return expect_bytes(out[0], b, "gather of one");
      },
      15s);
  for (auto& s : results) CHECK_MESSAGE(s.is_ok(), s.message());
}

namespace {
// Ranks 0 and 1 are a group under `key`; rank 2 is a stranger that knows rank 0's address
// (every address goes through the bootstrap) and claims rank 1 in a group of its own making,
// under the same group id: what it sends reaches rank 0's receives from rank 1.
constexpr uint32_t kGroup = 3;
struct Cast {
  std::unique_ptr<UcxTransport> group;  // ranks 0, 1: the real group; rank 2: the stranger's
  std::unique_ptr<UcxTransport> other;  // ranks 0, 1: a second group on the same contexts
};
Expected<Cast> cast(LocalBootstrap& b, UcxContext& context, const std::optional<GroupKey>& stranger_key) {
  SM_ASSIGN(all, b.allgather(context.local_address()));
  Cast c;
  if (b.rank() < 2) {
    SM_ASSIGN(g, context.connect(b.rank(), 2, {all[0], all[1]}, test::fixed_key(7), kGroup));
    SM_ASSIGN(o, context.connect(b.rank(), 2, {all[0], all[1]}, test::fixed_key(7, 2), kGroup + 1));
    c.group = std::move(g);
    c.other = std::move(o);
  } else {
    SM_ASSIGN(g, context.connect(1, 2, {all[0], all[2]}, stranger_key, kGroup));
    c.group = std::move(g);
  }
  return c;
}
}  // namespace

TEST_CASE(
    "ucx: a stranger's message of the right size with a wrong MAC is refused as unauthenticated, and cuts off "
    "the rank it came under") {
  for (const char* tls : kTransports) {
    CAPTURE(tls);
    auto results = run_local_group(
        3,
        [&](LocalBootstrap& b) -> Status {
          SM_ASSIGN(context, UcxContext::create({.transports = tls, .net_devices = "lo"}));
          SM_ASSIGN(c, cast(b, context, test::fixed_key(8)));  // the stranger guesses a key
          SM_TRY(b.barrier());
          if (b.rank() == 2) {  // 4096 B and its trailer: exactly what rank 0 expects from rank 1
            SM_TRY(c.group->send(0, 50, random_payload(4096, 50), deadline_in(5s)));
          } else if (b.rank() == 0) {
            Tensor into = receive_buffer(4096);
            const Transfer batch[] = {Transfer::recv(1, 50, into)};
            const Status s = c.group->exchange(batch, deadline_in(5s));
            if (s.code() != ErrorCode::unauthenticated)
              return make_error("the forged message was not refused as unauthenticated: ", s ? "ok" : s.message());
            SM_TRY(expect_error(s, {"peer 1", "failed authentication"}, "forged message"));
            SM_TRY(expect_bytes(into, Tensor::zeros(DType::bf16, {2048}), "the refused message's buffer"));
            // Cut off: nothing more goes to or comes from rank 1 in this group, at once.
            SM_TRY(expect_error(c.group->send(1, 51, random_payload(8, 51), deadline_in(1s)), {"unusable"},
                                "after the forged message"));
          }
          SM_TRY(b.barrier());
          // The process and its other groups are unharmed.
          if (b.rank() == 0) SM_TRY(c.other->send(1, 52, random_payload(1024, 52), deadline_in(5s)));
          if (b.rank() == 1) {
            Tensor into = receive_buffer(1024);
            SM_TRY(c.other->recv(0, 52, into, deadline_in(5s)));
            SM_TRY(expect_bytes(into, random_payload(1024, 52), "the other group"));
          }
          return b.barrier();
        },
        20s);
    for (size_t r = 0; r < results.size(); ++r)
      CHECK_MESSAGE(results[r].is_ok(), "rank ", r, ": ", results[r].message());
  }
}

TEST_CASE("ucx: a replayed message is refused as unauthenticated") {
  // The stranger has a copy of a real message (as if it had watched the wire): rank 1's first
  // message to rank 0 under tag 60, trailer and all. It sends it bare, twice. (Moving it to
  // another tag, rank or request fails its MAC: test_message_auth.cpp.)
  auto results = run_local_group(
      3,
      [&](LocalBootstrap& b) -> Status {
        SM_ASSIGN(context, UcxContext::create({.transports = "tcp", .net_devices = "lo"}));
        SM_ASSIGN(c, cast(b, context, std::nullopt));
        const Tensor payload = random_payload(4096, 60);
        SM_TRY(b.barrier());
        if (b.rank() == 2) {
          SM_ASSIGN(real, GroupAuth::create(test::fixed_key(7), 1, 2));
          const GroupAuth::Send one[] = {{0, 60, {payload.data_as<const uint8_t>(), payload.nbytes()}}};
          SM_ASSIGN(trailers, real.seal(one));
          Tensor copy = Tensor::zeros(DType::bf16, {int64_t(payload.nbytes() + kTrailerBytes) / 2});
          std::memcpy(copy.data(), payload.data(), payload.nbytes());
          std::memcpy(copy.data_as<uint8_t>() + payload.nbytes(), trailers[0].data(), kTrailerBytes);
          for (int i = 0; i < 2; ++i) SM_TRY(c.group->send(0, 60, copy, deadline_in(5s)));
        } else if (b.rank() == 0) {
          Tensor first = receive_buffer(4096), again = receive_buffer(4096);
          SM_TRY(c.group->recv(1, 60, first, deadline_in(5s)));  // the original, once
          SM_TRY(expect_bytes(first, payload, "the original message"));
          const Status replay = c.group->recv(1, 60, again, deadline_in(5s));
          if (replay.code() != ErrorCode::unauthenticated)
            return make_error("the replay was not refused: ", replay ? "ok" : replay.message());
          SM_TRY(expect_error(replay, {"replay"}, "replayed message"));
        }
        return b.barrier();
      },
      20s);
  for (size_t r = 0; r < results.size(); ++r) CHECK_MESSAGE(results[r].is_ok(), "rank ", r, ": ", results[r].message());
}
