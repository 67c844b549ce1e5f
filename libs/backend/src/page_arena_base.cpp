#include "page_arena_base.hpp"

#include "starmesh/backend/backend.hpp"

namespace starmesh {
namespace {

class PagedRange final : public page_range_i {
 public:
  PagedRange(std::shared_ptr<PageArenaBase> arena, char* base, int64_t pages)
      : arena_(std::move(arena)), base_(base), phys_(size_t(pages), -1) {}
  ~PagedRange() override {
    if (mapped_ > 0) arena_->before_unmap();
    for (size_t i = 0; i < phys_.size(); ++i)
      if (phys_[i] >= 0) {
        arena_->unmap_page(at(int64_t(i)), phys_[i]);
        arena_->give(phys_[i]);
      }
    arena_->release_address(base_, phys_.size() * size_t(arena_->page_bytes()));
  }

  void* base() const override { return base_; }
  int64_t pages() const override { return int64_t(phys_.size()); }
  int64_t mapped() const override { return mapped_; }
  bool is_mapped(int64_t page) const override { return page >= 0 && page < pages() && phys_[size_t(page)] >= 0; }

  Status map(int64_t first, int64_t n) override {
    if (first < 0 || n < 0 || first > pages() - n)
      return make_error("KV pages: cannot map pages [", first, ", ", first + n, ") of a range of ", pages());
    std::vector<int64_t> want;
    for (int64_t p = first; p < first + n; ++p)
      if (phys_[size_t(p)] < 0) want.push_back(p);
    if (want.empty()) return {};
    SM_ASSIGN(got, arena_->take(int64_t(want.size())));
    for (size_t i = 0; i < want.size(); ++i) {
      if (Status s = arena_->map_page(at(want[i]), got[i]); !s) {
        for (size_t j = i; j < got.size(); ++j) arena_->give(got[j]);  // the ones mapped stay, as mapped
        return s;
      }
      phys_[size_t(want[i])] = got[i];
      ++mapped_;
    }
    return {};
  }

 private:
  char* at(int64_t page) const { return base_ + size_t(page) * size_t(arena_->page_bytes()); }

  std::shared_ptr<PageArenaBase> arena_;
  char* base_;
  std::vector<int64_t> phys_;  // per page of the range: its arena page, -1 unmapped
  int64_t mapped_ = 0;
};

}  // namespace

PageArenaBase::PageArenaBase(int64_t page_bytes, int64_t pages, std::chrono::milliseconds wait)
    : page_bytes_(page_bytes), pages_(pages), wait_(wait) {
  for (int64_t p = 0; p < pages; ++p) free_.insert(free_.end(), p);
}

int64_t PageArenaBase::free_pages() const {
  std::lock_guard lock(mu_);
  return int64_t(free_.size());
}

Expected<std::vector<int64_t>> PageArenaBase::take(int64_t n) {
  std::unique_lock lock(mu_);
  if (!freed_.wait_for(lock, wait_, [&] { return int64_t(free_.size()) >= n; }))
    return make_error(ErrorCode::overloaded, "KV pages: ", n, " needed, ", free_.size(), " of ", pages_,
                      " free (pages of ", page_bytes_, " bytes); the worker's KV is full");
  std::vector<int64_t> out;
  for (int64_t i = 0; i < n; ++i) out.push_back(*free_.begin()), free_.erase(free_.begin());
  return out;
}

void PageArenaBase::give(int64_t page) {
  {
    std::lock_guard lock(mu_);
    free_.insert(page);
  }
  freed_.notify_all();
}

Expected<std::unique_ptr<page_range_i>> PageArenaBase::reserve(int64_t pages) {
  if (pages <= 0 || pages > pages_) return make_error("KV pages: a range of ", pages, " pages in an arena of ", pages_);
  SM_ASSIGN(base, reserve_address(size_t(pages) * size_t(page_bytes_)));
  return std::unique_ptr<page_range_i>(new PagedRange(shared_from_this(), base, pages));
}

// A backend without an arena: its caches are allocated whole (booked in pages all the same).
Expected<std::shared_ptr<page_arena_i>> backend_i::make_page_arena(int64_t, int64_t, std::chrono::milliseconds) {
  return make_error(ErrorCode::refused, "the ", name(), " backend has no KV page arena");
}

}  // namespace starmesh
