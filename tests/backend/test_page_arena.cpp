// The host page arena (paged KV): pages mapped into reserved address space, shared by every
// range, given back when a range goes, waited for when short.
#include <doctest/doctest.h>

#include <cstring>
#include <thread>

#include "starmesh/backend/cpu_backend.hpp"
#include "starmesh/backend/page_arena.hpp"

using namespace starmesh;
using namespace std::chrono_literals;

namespace {
std::shared_ptr<page_arena_i> arena_of(int64_t pages, std::chrono::milliseconds wait = 0ms) {
  return make_host_page_arena(host_page_granularity(), pages, wait).value();
}
}  // namespace

TEST_CASE("page arena maps pages into a range and gives them back when the range goes") {
  auto arena = arena_of(8);
  const int64_t pb = arena->page_bytes();
  {
    auto r = arena->reserve(5).value();
    CHECK(r->mapped() == 0);
    REQUIRE(r->map(1, 3));
    CHECK(r->mapped() == 3);
    CHECK_FALSE(r->is_mapped(0));
    CHECK(r->is_mapped(3));
    CHECK(arena->free_pages() == 5);
    REQUIRE(r->map(0, 2));  // page 1 is kept as it is, page 0 is new
    CHECK(r->mapped() == 4);
    CHECK(arena->free_pages() == 4);
    // The mapped pages are memory: written and read back across page boundaries.
    auto* p = static_cast<unsigned char*>(r->base());
    for (int64_t i = 0; i < 4 * pb; ++i) p[i] = static_cast<unsigned char>(i * 7 + 3);
    bool same = true;
    for (int64_t i = 0; i < 4 * pb; ++i) same = same && p[i] == static_cast<unsigned char>(i * 7 + 3);
    CHECK(same);
    CHECK_FALSE(r->map(4, 2));  // past the range
    CHECK_FALSE(r->map(-1, 1));
  }
  CHECK(arena->free_pages() == 8);  // every page is back
}

TEST_CASE("page arena serves any length from scattered free pages: no fragmentation") {
  auto arena = arena_of(12);
  const int64_t pb = arena->page_bytes();
  // Four caches of 3 pages fill it; freeing the 1st and 3rd leaves 6 free pages in two holes.
  std::vector<std::unique_ptr<page_range_i>> held;
  for (int i = 0; i < 4; ++i) {
    held.push_back(arena->reserve(3).value());
    REQUIRE(held.back()->map(0, 3));
    std::memset(held.back()->base(), 'a' + i, size_t(3 * pb));
  }
  CHECK(arena->free_pages() == 0);
  held[0].reset();
  held[2].reset();
  CHECK(arena->free_pages() == 6);
  // One range of 6 contiguous pages (more than either hole) takes them all.
  auto big = arena->reserve(6).value();
  REQUIRE(big->map(0, 6));
  std::memset(big->base(), 'z', size_t(6 * pb));
  CHECK(arena->free_pages() == 0);
  // The other ranges' memory is untouched.
  auto* b1 = static_cast<const char*>(held[1]->base());
  auto* b3 = static_cast<const char*>(held[3]->base());
  CHECK(b1[0] == 'b');
  CHECK(b1[3 * pb - 1] == 'b');
  CHECK(b3[0] == 'd');
  CHECK(b3[3 * pb - 1] == 'd');
}

TEST_CASE("page arena short of pages refuses as overloaded and maps none, or waits for pages coming back") {
  auto arena = arena_of(4, 50ms);
  auto a = arena->reserve(3).value();
  REQUIRE(a->map(0, 3));
  auto b = arena->reserve(2).value();
  const Status s = b->map(0, 2);
  REQUIRE_FALSE(s);
  CHECK(s.error().code == ErrorCode::overloaded);
  CHECK(b->mapped() == 0);
  CHECK(arena->free_pages() == 1);

  // With a longer wait, pages another thread gives back in the meantime serve the map.
  auto waiting = arena_of(4, 5000ms);
  auto c = waiting->reserve(4).value();
  REQUIRE(c->map(0, 4));
  std::thread freer([&] {
    std::this_thread::sleep_for(50ms);
    c.reset();
  });
  auto d = waiting->reserve(2).value();
  CHECK(d->map(0, 2));
  freer.join();
  CHECK(waiting->free_pages() == 2);
}

TEST_CASE("page arena parks a fully mapped range for the next of its size and unmaps parked ranges when short") {
  auto arena = arena_of(8);
  const int64_t pb = arena->page_bytes();
  void* first = nullptr;
  {
    auto r = arena->reserve(3).value();
    REQUIRE(r->map(0, 3));
    std::memset(r->base(), 'q', size_t(3 * pb));
    first = r->base();
  }
  CHECK(arena->free_pages() == 8);  // parked pages count as free
  {
    // The same size: the parked range itself, mapped, with what its last user wrote.
    auto again = arena->reserve(3).value();
    CHECK(again->base() == first);
    CHECK(again->mapped() == 3);
    CHECK(again->map(0, 3));  // nothing to map
    CHECK(static_cast<const char*>(again->base())[3 * pb - 1] == 'q');
    CHECK(arena->free_pages() == 5);
    // Another size does not take it: fresh address space, nothing mapped.
    auto other = arena->reserve(2).value();
    CHECK(other->mapped() == 0);
  }
  CHECK(arena->free_pages() == 8);
  {
    // A range mapped in part is not parked: its pages come back unmapped.
    auto part = arena->reserve(4).value();
    REQUIRE(part->map(1, 2));
  }
  auto fresh = arena->reserve(4).value();
  CHECK(fresh->mapped() == 0);
  // 5 free pages and a parked range of 3: a map of 8 unmaps the parked range to take its pages.
  auto all = arena->reserve(8).value();
  REQUIRE(all->map(0, 8));
  CHECK(arena->free_pages() == 0);
  std::memset(all->base(), 'w', size_t(8 * pb));
  CHECK(arena->reserve(3).value()->mapped() == 0);  // nothing parked is left
}

TEST_CASE("page arena refuses bad geometry and the CPU backend makes host arenas") {
  const int64_t g = host_page_granularity();
  CHECK_FALSE(make_host_page_arena(g + 1, 4, 0ms));
  CHECK_FALSE(make_host_page_arena(0, 4, 0ms));
  CHECK_FALSE(make_host_page_arena(g, 0, 0ms));
  CHECK_FALSE(make_host_page_arena(g, int64_t(1) << 40, 0ms));
  auto arena = arena_of(2);
  CHECK_FALSE(arena->reserve(3));  // more than the arena holds
  CHECK_FALSE(arena->reserve(0));
  ThreadPool pool(1);
  CpuBackend cpu(pool);
  CHECK(cpu.page_granularity() == g);
  auto made = cpu.make_page_arena(2 * g, 3, 0ms);
  REQUIRE(made);
  CHECK((*made)->pages() == 3);
  CHECK((*made)->device() == Device::cpu());
}
