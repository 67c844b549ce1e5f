// The host page arena: a memfd holds the pages; a range is address space reserved with
// PROT_NONE, and mapping page i of a range puts one memfd page there (MAP_FIXED). A page given
// back is unmapped (PROT_NONE again) and its memory punched out of the memfd, so the process
// holds only the pages in use. Lowest free pages first: a growing cache tends to get adjacent
// pages, which the kernel merges into one mapping.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <set>
#include <vector>

#include "starmesh/backend/backend.hpp"
#include "starmesh/backend/page_arena.hpp"

namespace starmesh {
namespace {

// Mapped pages are each a mapping at worst; the kernel allows 65530 per process by default.
constexpr int64_t kMaxPages = 32768;

class HostPageArena final : public page_arena_i, public std::enable_shared_from_this<HostPageArena> {
 public:
  HostPageArena(int fd, int64_t page_bytes, int64_t pages, std::chrono::milliseconds wait)
      : fd_(fd), page_bytes_(page_bytes), pages_(pages), wait_(wait) {
    for (int64_t p = 0; p < pages; ++p) free_.insert(free_.end(), p);
  }
  ~HostPageArena() override { ::close(fd_); }

  Device device() const override { return Device::cpu(); }
  int64_t page_bytes() const override { return page_bytes_; }
  int64_t pages() const override { return pages_; }
  int64_t free_pages() const override {
    std::lock_guard lock(mu_);
    return int64_t(free_.size());
  }
  Expected<std::unique_ptr<page_range_i>> reserve(int64_t pages) override;

  int fd() const { return fd_; }

  // n pages off the free list (lowest first), waiting up to wait_ for them to come back.
  Expected<std::vector<int64_t>> take(int64_t n) {
    std::unique_lock lock(mu_);
    if (!freed_.wait_for(lock, wait_, [&] { return int64_t(free_.size()) >= n; }))
      return make_error(ErrorCode::overloaded, "KV pages: ", n, " needed, ", free_.size(), " of ", pages_,
                        " free (pages of ", page_bytes_, " bytes); the worker's KV is full");
    std::vector<int64_t> out;
    for (int64_t i = 0; i < n; ++i) out.push_back(*free_.begin()), free_.erase(free_.begin());
    return out;
  }
  void give(int64_t page) {
    // The memory goes back to the system; a later take reads zeros (not relied on).
    ::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, page * page_bytes_, page_bytes_);
    {
      std::lock_guard lock(mu_);
      free_.insert(page);
    }
    freed_.notify_all();
  }

 private:
  int fd_;
  int64_t page_bytes_, pages_;
  std::chrono::milliseconds wait_;
  mutable std::mutex mu_;
  std::condition_variable freed_;
  std::set<int64_t> free_;
};

class HostPageRange final : public page_range_i {
 public:
  HostPageRange(std::shared_ptr<HostPageArena> arena, char* base, int64_t pages)
      : arena_(std::move(arena)), base_(base), phys_(size_t(pages), -1) {}
  ~HostPageRange() override {
    for (size_t i = 0; i < phys_.size(); ++i)
      if (phys_[i] >= 0) unmap(int64_t(i));
    ::munmap(base_, phys_.size() * size_t(arena_->page_bytes()));
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
    const size_t pb = size_t(arena_->page_bytes());
    for (size_t i = 0; i < want.size(); ++i) {
      void* at = base_ + size_t(want[i]) * pb;
      void* m = ::mmap(at, pb, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, arena_->fd(), off_t(got[i]) * off_t(pb));
      if (m == MAP_FAILED) {
        const int err = errno;
        for (size_t j = i; j < got.size(); ++j) arena_->give(got[j]);
        return make_error("KV pages: mmap failed: ", std::strerror(err));
      }
      phys_[size_t(want[i])] = got[i];
      ++mapped_;
    }
    return {};
  }

 private:
  void unmap(int64_t page) {
    const size_t pb = size_t(arena_->page_bytes());
    // Back to reserved address space (the range keeps it until it goes).
    ::mmap(base_ + size_t(page) * pb, pb, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
    arena_->give(phys_[size_t(page)]);
    phys_[size_t(page)] = -1;
    --mapped_;
  }

  std::shared_ptr<HostPageArena> arena_;
  char* base_;
  std::vector<int64_t> phys_;  // per page of the range: its arena page, -1 unmapped
  int64_t mapped_ = 0;
};

Expected<std::unique_ptr<page_range_i>> HostPageArena::reserve(int64_t pages) {
  if (pages <= 0 || pages > pages_) return make_error("KV pages: a range of ", pages, " pages in an arena of ", pages_);
  void* base = ::mmap(nullptr, size_t(pages) * size_t(page_bytes_), PROT_NONE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (base == MAP_FAILED) return make_error("KV pages: reserving address space failed: ", std::strerror(errno));
  return std::unique_ptr<page_range_i>(new HostPageRange(shared_from_this(), static_cast<char*>(base), pages));
}

}  // namespace

int64_t host_page_granularity() { return int64_t(::sysconf(_SC_PAGESIZE)); }

Expected<std::shared_ptr<page_arena_i>> make_host_page_arena(int64_t page_bytes, int64_t pages,
                                                             std::chrono::milliseconds wait) {
  const int64_t g = host_page_granularity();
  if (page_bytes <= 0 || page_bytes % g != 0 || page_bytes > (int64_t(1) << 30))
    return make_error("KV pages: a page of ", page_bytes, " bytes (a multiple of ", g, ", at most 1 GiB)");
  if (pages <= 0 || pages > kMaxPages)
    return make_error("KV pages: ", pages, " pages (1 to ", kMaxPages, "; take larger pages)");
  const int fd = ::memfd_create("starmesh-kv", MFD_CLOEXEC);
  if (fd < 0) return make_error("KV pages: memfd_create failed: ", std::strerror(errno));
  if (::ftruncate(fd, off_t(page_bytes) * off_t(pages)) != 0) {
    const int err = errno;
    ::close(fd);
    return make_error("KV pages: sizing the arena failed: ", std::strerror(err));
  }
  return std::shared_ptr<page_arena_i>(std::make_shared<HostPageArena>(fd, page_bytes, pages, wait));
}

}  // namespace starmesh

namespace starmesh {

Expected<std::shared_ptr<page_arena_i>> backend_i::make_page_arena(int64_t, int64_t, std::chrono::milliseconds) {
  return make_error(ErrorCode::refused, "the ", name(), " backend has no KV page arena");
}

}  // namespace starmesh
