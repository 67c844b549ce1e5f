// Paged KV: the page geometry, and a model whose caches live in an arena's pages computes what
// it computes with whole allocations, giving its pages back as caches go.
#include <doctest/doctest.h>

#include "starmesh/backend/cpu_backend.hpp"
#include "starmesh/model/kv_paging.hpp"
#include "starmesh/model/transformer.hpp"

using namespace starmesh;
using namespace std::chrono_literals;

TEST_CASE("a KV capacity the device cannot hold is refused with the most that fits") {
  constexpr int64_t kGiB = int64_t(1) << 30;
  // 128 KiB a token (an 8B model's bf16 KV), 10 GiB free, 1 GiB kept: 73,728 tokens fit.
  CHECK(check_kv_fits(73728, 128 * 1024, 10 * kGiB, kGiB, "cuda"));
  const Status over = check_kv_fits(73729, 128 * 1024, 10 * kGiB, kGiB, "cuda");
  REQUIRE_FALSE(over);
  CHECK(over.code() == ErrorCode::invalid_argument);
  CAPTURE(over.message());
  CHECK(over.message().find("--capacity 73729 KV tokens need 9.0 GiB") != std::string::npos);
  CHECK(over.message().find("the cuda device has 10.0 GiB free") != std::string::npos);
  CHECK(over.message().find("give --capacity at most 73728") != std::string::npos);
  // Less free than the reserve: nothing fits, and the sizes do not overflow.
  const Status none = check_kv_fits(int64_t(1) << 34, int64_t(1) << 20, kGiB / 2, kGiB, "cpu");
  REQUIRE_FALSE(none);
  CHECK(none.message().find("at most 0") != std::string::npos);
  CHECK(none.message().find("16777216.0 GiB") != std::string::npos);
  // Free memory unknown: nothing to check against.
  CHECK(check_kv_fits(int64_t(1) << 34, int64_t(1) << 20, std::nullopt, kGiB, "cpu"));
}

TEST_CASE("the CPU backend knows the host's available memory") {
  ThreadPool pool{1};
  CpuBackend cpu{pool};
  const std::optional<int64_t> free_bytes = cpu.free_memory_bytes();
  REQUIRE(free_bytes);  // Linux: /proc/meminfo's MemAvailable
  CHECK(*free_bytes > 0);
}

TEST_CASE("kv page geometry: a page is some tokens' KV of every layer, whole device pages, at most max pages") {
  // Rows of 512 bytes, 6 layers: 6 KiB a token, so 2 tokens are the smallest page of whole
  // 4 KiB device pages (3 of them).
  auto g = kv_page_geometry(512, 6, 1000, 1, 4096, 32768).value();
  CHECK(g.page_tokens == 2);
  CHECK(g.page_bytes == 3 * 4096);
  CHECK(g.capacity_tokens == 1000);
  CHECK(g.pages == 500);
  // Asked 20: a multiple of 2 already.
  g = kv_page_geometry(512, 6, 1000, 20, 4096, 32768).value();
  CHECK(g.page_tokens == 20);
  CHECK(g.page_bytes == 30 * 4096);
  CHECK(g.capacity_tokens == 1000);
  CHECK(g.pages == 50);
  // Asked 21: up to 22; the capacity in whole pages, down (a budget: never more than asked).
  g = kv_page_geometry(512, 6, 1000, 21, 4096, 32768).value();
  CHECK(g.page_tokens == 22);
  CHECK(g.capacity_tokens == 990);
  CHECK(g.pages == 45);
  // Rows of 384 bytes, 2 layers: 1536 bytes a token, 8 tokens fill 3 device pages.
  g = kv_page_geometry(384, 2, 100, 1, 4096, 32768).value();
  CHECK(g.page_tokens == 8);
  CHECK(g.page_bytes == 3 * 4096);
  // A large capacity makes pages larger, so the arena keeps to max_pages.
  g = kv_page_geometry(512, 6, 1 << 20, 16, 4096, 1200).value();
  CHECK(g.pages <= 1200);
  CHECK(g.capacity_tokens <= (1 << 20));
  CHECK(g.capacity_tokens > (1 << 20) - g.page_tokens);
  CHECK(g.page_tokens % 2 == 0);
  // The CUDA shape (Llama-3.1-8B: 2 KiB rows, 32 layers, 128 KiB a token), 2 MiB granularity:
  // pages of 16 tokens, so a query's 150 tokens take 10 pages (20 MiB), not a page per tensor.
  g = kv_page_geometry(2048, 32, 131072, 16, 2 << 20, 32768).value();
  CHECK(g.page_tokens == 16);
  CHECK(g.page_bytes == 2 << 20);
  CHECK(g.pages == 8192);
  // 700K tokens of it would need 43750 pages of 2 MiB: pages of 32 tokens keep to 32768.
  g = kv_page_geometry(2048, 32, 700000, 16, 2 << 20, 32768).value();
  CHECK(g.page_tokens == 32);
  CHECK(g.pages == 21875);
  // Bad input is refused, not computed.
  CHECK_FALSE(kv_page_geometry(0, 6, 1000, 1, 4096, 32768));
  CHECK_FALSE(kv_page_geometry(512, 6, 0, 1, 4096, 32768));
  CHECK_FALSE(kv_page_geometry(512, 6, int64_t(1) << 50, 1, 4096, 32768));
  CHECK_FALSE(kv_page_geometry(512, 6, 1000, 1, 4096, 0));
  CHECK_FALSE(kv_page_geometry(512, 6, 1000, 1, 0, 32768));
  CHECK_FALSE(kv_page_geometry(512, 6, 1000, -1, 4096, 32768));
  CHECK_FALSE(kv_page_geometry(512, 6, 20, 24, 4096, 32768));  // less than one page
  CHECK(round_to_pages(17, 16) == 32);
  CHECK(round_to_pages(16, 16) == 16);
  CHECK(round_to_pages(17, 0) == 17);
}

namespace {
struct Golden {
  ThreadPool pool{2};
  CpuBackend cpu{pool};
  Transformer model = Transformer::load(cpu, STARMESH_GOLDEN_MODEL_DIR).value();
};
}  // namespace

TEST_CASE_FIXTURE(Golden, "paged KV caches give the logits of whole allocations and return their pages") {
  const std::vector<int32_t> prompt = {5, 17, 42, 3, 99, 7, 61, 23, 8, 150, 11, 4, 77};
  auto plain = model.make_cache(40).value();
  const auto want = model.forward(prompt, plain, /*all_rows=*/true).value().to_f32_vector();

  auto g = page_kv(model, 200, 4, 100ms).value();
  REQUIRE(model.kv_paging().arena);
  const auto& arena = model.kv_paging().arena;
  CHECK(g.page_tokens >= 4);
  CHECK(arena->pages() == g.pages);
  const int64_t per_cache = (40 + g.page_tokens - 1) / g.page_tokens;  // every layer's KV in each page
  {
    auto paged = model.make_cache(40).value();
    CHECK(paged.pages_held() == per_cache);
    CHECK(arena->free_pages() == g.pages - per_cache);
    // Prefill, then decode a few tokens one by one: the same logits as the plain cache.
    const auto got = model.forward(prompt, paged, /*all_rows=*/true).value().to_f32_vector();
    CHECK(got == want);
    for (int32_t t : {9, 31, 200}) {
      const auto a = model.forward(std::vector<int32_t>{t}, plain).value().to_f32_vector();
      const auto b = model.forward(std::vector<int32_t>{t}, paged).value().to_f32_vector();
      CHECK(a == b);
    }
    // Working memory (phase 1's anchor) is not paged.
    auto working = model.make_cache(40, Transformer::KvMemory::working).value();
    CHECK(working.pages_held() == 0);
    CHECK(arena->free_pages() == g.pages - per_cache);
  }
  CHECK(arena->free_pages() == g.pages);  // the cache went: every page is back at once

  // Caches beyond the arena's pages are refused as overloaded (after the wait), not allocated.
  std::vector<KvCache> held;
  for (;;) {
    auto c = model.make_cache(40);
    if (!c) {
      CHECK(c.error().code == ErrorCode::overloaded);
      break;
    }
    held.push_back(std::move(*c));
    REQUIRE(held.size() < 100);
  }
  CHECK(int64_t(held.size()) == g.pages / per_cache);
}
