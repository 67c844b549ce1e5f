// The fork-and-pipe local group that the UCX and NCCL tests and the benchmark stand on.
#include <doctest/doctest.h>

#include <chrono>
#include <csignal>
#include <stdexcept>
#include <thread>

#include "starmesh/launch/local_group.hpp"

using namespace starmesh;
using namespace std::chrono_literals;

TEST_CASE("local group: allgather relays every rank's blob in rank order, twice") {
  auto results = run_local_group(
      3,
      [](LocalBootstrap& b) -> Status {
        for (int round = 0; round < 2; ++round) {
          std::vector<uint8_t> mine(size_t(b.rank() + round), uint8_t(10 * b.rank() + round));
          SM_ASSIGN(all, b.allgather(mine));
          if (all.size() != 3) return make_error("got ", all.size(), " blobs");
          for (int r = 0; r < 3; ++r)
            if (all[size_t(r)] != std::vector<uint8_t>(size_t(r + round), uint8_t(10 * r + round)))
              return make_error("round ", round, ": blob of rank ", r, " is wrong");
        }
        return {};
      },
      10s);
  REQUIRE(results.size() == 3);
  for (auto& s : results) CHECK_MESSAGE(s.is_ok(), s.message());
}

TEST_CASE("local group: errors, crashes and hangs are reported per rank, never a hang") {
  const auto start = std::chrono::steady_clock::now();
  auto results = run_local_group(
      3,
      [](LocalBootstrap& b) -> Status {
        if (b.rank() == 0) return make_error("rank zero says no");
        if (b.rank() == 1) std::raise(SIGABRT);
        std::this_thread::sleep_for(30s);  // rank 2 hangs
        return {};
      },
      1500ms);
  CHECK(std::chrono::steady_clock::now() - start < 5s);
  REQUIRE(results.size() == 3);
  CHECK(results[0].message().find("rank 0: rank zero says no") != std::string::npos);
  CHECK(results[1].message().find("signal") != std::string::npos);
  CHECK(results[2].message().find("did not finish within 1500 ms") != std::string::npos);
}

TEST_CASE("local group: a rank's exception, of any type, is its error and never unwinds into the parent's code") {
  // A test framework's failed assertion throws a type of its own: a child that let it unwind
  // would go on running the parent's test suite (a second process printing results).
  auto results = run_local_group(
      2,
      [](LocalBootstrap& b) -> Status {
        if (b.rank() == 0) throw std::runtime_error("a std::exception");
        throw 42;
      },
      10s);
  REQUIRE(results.size() == 2);
  CHECK(results[0].message().find("exception: a std::exception") != std::string::npos);
  CHECK(results[1].message().find("not a std::exception") != std::string::npos);
}

TEST_CASE("local group: a rank that leaves stops the others waiting in an allgather") {
  const auto start = std::chrono::steady_clock::now();
  auto results = run_local_group(
      3,
      [](LocalBootstrap& b) -> Status {
        if (b.rank() == 1) return make_error("cannot start");
        return b.barrier();
      },
      20s);
  CHECK(std::chrono::steady_clock::now() - start < 5s);
  CHECK(results[1].message().find("cannot start") != std::string::npos);
  CHECK(results[0].message().find("left while the others waited") != std::string::npos);
}
