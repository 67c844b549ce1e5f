// libFuzzer target: a hostile .safetensors file (header length, JSON header, offsets). The
// input is written to an in-memory file and opened as a checkpoint would be; every tensor it
// accepts is read end to end (ASan catches a view that reaches outside the mapping).
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "starmesh/model/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int fd = memfd_create("fuzz.safetensors", MFD_CLOEXEC);
  if (fd < 0) return 0;
  for (size_t done = 0; done < size;) {
    const ssize_t n = write(fd, data + done, size - done);
    if (n <= 0) break;
    done += size_t(n);
  }
  auto file = starmesh::SafetensorsFile::open("/proc/self/fd/" + std::to_string(fd));
  close(fd);  // the mapping, if any, outlives the descriptor
  if (!file) return 0;
  uint64_t sum = 0;
  for (const std::string& name : file->names()) {
    auto t = file->get(name);
    if (!t) continue;
    const auto* bytes = static_cast<const uint8_t*>(t->data());
    for (size_t i = 0; i < t->nbytes(); ++i) sum += bytes[i];
  }
  volatile uint64_t keep = sum;  // the reads must happen
  (void)keep;
  return 0;
}
