#pragma once
// Which device a command computes on, said one way everywhere ("cpu", "cuda", "cuda:N",
// "auto"), and the backend for it. Every command parses --device through here.
#include <memory>
#include <string>
#include <string_view>

#include "starmesh/backend/backend.hpp"
#include "starmesh/core/expected.hpp"
#include "starmesh/core/thread_pool.hpp"

namespace starmesh {

struct DeviceSpec {
  enum class Kind : uint8_t { cpu, cuda, automatic } kind = Kind::cpu;
  int index = 0;  // cuda: the device number as CUDA sees it (after CUDA_VISIBLE_DEVICES)
};

// "cpu", "cuda" (= cuda:0), "cuda:N" (N in [0, 64)), "auto"; anything else is refused
// (invalid_argument) with the accepted forms.
Expected<DeviceSpec> parse_device(std::string_view text);
std::string to_string(const DeviceSpec& device);  // "cpu", "cuda:0", "auto"

// `auto` made concrete: the first GPU when this build has CUDA and one answers, else the CPU.
DeviceSpec resolve_device(const DeviceSpec& device);

// The backend for `device` (resolved first); the CPU backend computes on `pool`, which must
// outlive it. A CUDA device in a build without CUDA is refused.
Expected<std::unique_ptr<backend_i>> make_backend(const DeviceSpec& device, ThreadPool& pool);

}  // namespace starmesh
