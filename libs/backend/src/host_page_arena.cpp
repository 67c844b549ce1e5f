// The host page arena: a memfd holds the pages; a range is address space reserved with
// PROT_NONE, and mapping page i of a range puts one memfd page there (MAP_FIXED). A page
// unmapped goes back to PROT_NONE and its memory is punched out of the memfd, so the process
// holds only the pages in use.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "page_arena_base.hpp"

namespace starmesh {
namespace {

class HostPageArena final : public PageArenaBase {
 public:
  HostPageArena(int fd, int64_t page_bytes, int64_t pages, std::chrono::milliseconds wait)
      : PageArenaBase(page_bytes, pages, wait), fd_(fd) {}
  ~HostPageArena() override {
    drop_parked();
    ::close(fd_);
  }

  Device device() const override { return Device::cpu(); }

  Expected<char*> reserve_address(size_t bytes) override {
    void* base = ::mmap(nullptr, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED) return make_error("KV pages: reserving address space failed: ", std::strerror(errno));
    return static_cast<char*>(base);
  }
  void release_address(char* base, size_t bytes) override { ::munmap(base, bytes); }

  Status map_page(char* at, int64_t page) override {
    const size_t pb = size_t(page_bytes());
    if (::mmap(at, pb, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd_, off_t(page) * off_t(pb)) == MAP_FAILED)
      return make_error("KV pages: mmap failed: ", std::strerror(errno));
    return {};
  }
  void unmap_page(char* at, int64_t page) override {
    const size_t pb = size_t(page_bytes());
    // Back to reserved address space (the range keeps it until it goes); the memory goes
    // back to the system, and a later map of the page reads zeros (not relied on).
    ::mmap(at, pb, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
    ::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off_t(page) * off_t(pb), off_t(pb));
  }

 private:
  int fd_;
};

}  // namespace

int64_t host_page_granularity() { return int64_t(::sysconf(_SC_PAGESIZE)); }

Expected<std::shared_ptr<page_arena_i>> make_host_page_arena(int64_t page_bytes, int64_t pages,
                                                             std::chrono::milliseconds wait) {
  const int64_t g = host_page_granularity();
  if (page_bytes <= 0 || page_bytes % g != 0 || page_bytes > (int64_t(1) << 30))
    return make_error("KV pages: a page of ", page_bytes, " bytes (a multiple of ", g, ", at most 1 GiB)");
  if (pages <= 0 || pages > kMaxArenaPages)
    return make_error("KV pages: ", pages, " pages (1 to ", kMaxArenaPages, "; take larger pages)");
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
