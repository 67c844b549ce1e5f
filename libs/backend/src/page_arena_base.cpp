#include "page_arena_base.hpp"

#include <algorithm>

#include "starmesh/backend/backend.hpp"

namespace starmesh {
namespace {

class PagedRange final : public page_range_i {
 public:
  PagedRange(std::shared_ptr<PageArenaBase> arena, char* base, int64_t pages)
      : arena_(std::move(arena)), base_(base), phys_(size_t(pages), -1) {}
  // A parked range, every page mapped.
  PagedRange(std::shared_ptr<PageArenaBase> arena, PageArenaBase::Range r)
      : arena_(std::move(arena)), base_(r.base), phys_(std::move(r.phys)), mapped_(int64_t(phys_.size())) {}
  ~PagedRange() override {
    PageArenaBase::Range r{base_, std::move(phys_)};
    if (mapped_ == int64_t(r.phys.size()))
      arena_->park(std::move(r));
    else
      arena_->release({std::move(r)});
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
    // Run by run of adjacent range pages: map each page, then allow access to the run at once.
    for (size_t i = 0; i < want.size();) {
      size_t end = i + 1;
      while (end < want.size() && want[end] == want[end - 1] + 1) ++end;
      size_t done = i;
      Status s;
      for (; done < end; ++done)
        if (s = arena_->map_page(at(want[done]), got[done]); !s) break;
      if (s) s = arena_->allow_access(at(want[i]), int64_t(end - i));
      if (!s) {  // this run's pages go back unmapped; the runs before stay, as mapped
        for (size_t j = i; j < done; ++j) arena_->unmap_page(at(want[j]), got[j]);
        for (size_t j = i; j < got.size(); ++j) arena_->give(got[j]);
        return s;
      }
      for (size_t j = i; j < end; ++j) phys_[size_t(want[j])] = got[j];
      mapped_ += int64_t(end - i);
      i = end;
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
  return int64_t(free_.size()) + parked_pages_;
}

Expected<std::vector<int64_t>> PageArenaBase::take(int64_t n) {
  const auto deadline = std::chrono::steady_clock::now() + wait_;
  std::unique_lock lock(mu_);
  while (int64_t(free_.size()) < n) {
    if (!parked_.empty()) {  // parked pages first, oldest first: unmapping them costs less than waiting
      std::vector<Range> out;
      int64_t pages = int64_t(free_.size());
      while (pages < n && !parked_.empty()) {
        out.push_back(unpark_oldest());
        pages += int64_t(out.back().phys.size());
      }
      lock.unlock();
      release(std::move(out));
      lock.lock();
      continue;
    }
    if (freed_.wait_until(lock, deadline) == std::cv_status::timeout && int64_t(free_.size()) < n && parked_.empty())
      return make_error(ErrorCode::overloaded, "KV pages: ", n, " needed, ", free_.size(), " of ", pages_,
                        " free (pages of ", page_bytes_, " bytes); the worker's KV is full");
  }
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

PageArenaBase::Range PageArenaBase::unpark_oldest() {
  Range r = std::move(parked_.front());
  parked_.pop_front();
  parked_pages_ -= int64_t(r.phys.size());
  return r;
}

void PageArenaBase::park(Range r) {
  std::unique_lock lock(mu_);
  parked_pages_ += int64_t(r.phys.size());
  parked_.push_back(std::move(r));
  std::vector<Range> over;
  if (parked_.size() > kMaxParked) over.push_back(unpark_oldest());
  lock.unlock();
  release(std::move(over));
  freed_.notify_all();  // a take waiting for pages can unmap this range
}

void PageArenaBase::release(std::vector<Range> ranges) {
  const bool mapped = std::any_of(ranges.begin(), ranges.end(), [](const Range& r) {
    return std::any_of(r.phys.begin(), r.phys.end(), [](int64_t p) { return p >= 0; });
  });
  if (mapped) before_unmap();
  const size_t pb = size_t(page_bytes_);
  for (const Range& r : ranges) {
    for (size_t i = 0; i < r.phys.size(); ++i)
      if (r.phys[i] >= 0) unmap_page(r.base + i * pb, r.phys[i]);
    release_address(r.base, r.phys.size() * pb);
    for (int64_t page : r.phys)
      if (page >= 0) give(page);
  }
}

void PageArenaBase::drop_parked() {
  std::unique_lock lock(mu_);
  std::vector<Range> all(std::make_move_iterator(parked_.begin()), std::make_move_iterator(parked_.end()));
  parked_.clear();
  parked_pages_ = 0;
  lock.unlock();
  release(std::move(all));
}

Expected<std::unique_ptr<page_range_i>> PageArenaBase::reserve(int64_t pages) {
  if (pages <= 0 || pages > pages_) return make_error("KV pages: a range of ", pages, " pages in an arena of ", pages_);
  {
    std::lock_guard lock(mu_);
    // The most recently parked range of this size (the oldest stay first in line to be unmapped).
    for (auto it = parked_.rbegin(); it != parked_.rend(); ++it)
      if (int64_t(it->phys.size()) == pages) {
        Range r = std::move(*it);
        parked_.erase(std::next(it).base());
        parked_pages_ -= pages;
        return std::unique_ptr<page_range_i>(new PagedRange(shared_from_this(), std::move(r)));
      }
  }
  SM_ASSIGN(base, reserve_address(size_t(pages) * size_t(page_bytes_)));
  return std::unique_ptr<page_range_i>(new PagedRange(shared_from_this(), base, pages));
}

// A backend without an arena: its caches are allocated whole (booked in pages all the same).
Expected<std::shared_ptr<page_arena_i>> backend_i::make_page_arena(int64_t, int64_t, std::chrono::milliseconds) {
  return make_error(ErrorCode::refused, "the ", name(), " backend has no KV page arena");
}

}  // namespace starmesh
