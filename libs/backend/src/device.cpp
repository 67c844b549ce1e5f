#include "starmesh/backend/device.hpp"

#include <charconv>

#include "starmesh/backend/cpu_backend.hpp"
#ifdef STARMESH_HAVE_CUDA
#include "starmesh/backend/cuda_backend.hpp"
#endif

namespace starmesh {

Expected<DeviceSpec> parse_device(std::string_view text) {
  if (text == "cpu") return DeviceSpec{DeviceSpec::Kind::cpu, 0};
  if (text == "auto") return DeviceSpec{DeviceSpec::Kind::automatic, 0};
  if (text == "cuda") return DeviceSpec{DeviceSpec::Kind::cuda, 0};
  constexpr std::string_view prefix = "cuda:";
  if (text.substr(0, prefix.size()) == prefix) {
    const std::string_view digits = text.substr(prefix.size());
    int index = -1;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), index);
    if (ec == std::errc{} && end == digits.data() + digits.size() && index >= 0 && index < 64)
      return DeviceSpec{DeviceSpec::Kind::cuda, index};
  }
  return make_error(ErrorCode::invalid_argument, "device '", text, "' is not one of cpu, cuda, cuda:N (N < 64), auto");
}

std::string to_string(const DeviceSpec& d) {
  switch (d.kind) {
    case DeviceSpec::Kind::cpu:
      return "cpu";
    case DeviceSpec::Kind::cuda:
      return "cuda:" + std::to_string(d.index);
    case DeviceSpec::Kind::automatic:
      return "auto";
  }
  return "cpu";
}

DeviceSpec resolve_device(const DeviceSpec& d) {
  if (d.kind != DeviceSpec::Kind::automatic) return d;
#ifdef STARMESH_HAVE_CUDA
  if (CudaBackend::create(0)) return DeviceSpec{DeviceSpec::Kind::cuda, 0};
#endif
  return DeviceSpec{DeviceSpec::Kind::cpu, 0};
}

Expected<std::unique_ptr<backend_i>> make_backend(const DeviceSpec& device, ThreadPool& pool) {
  const DeviceSpec d = resolve_device(device);
  if (d.kind == DeviceSpec::Kind::cpu) return std::unique_ptr<backend_i>(std::make_unique<CpuBackend>(pool));
#ifdef STARMESH_HAVE_CUDA
  SM_ASSIGN(cuda, CudaBackend::create(d.index));
  return std::unique_ptr<backend_i>(std::move(cuda));
#else
  return make_error(ErrorCode::invalid_argument, "device ", to_string(d),
                    ": this build has no CUDA backend (configure with nvcc present)");
#endif
}

}  // namespace starmesh
