#pragma once
// How long work (loading a model, encoding a context) tells its caller how far it is: `done`
// of `total` units, called in order on the working thread. Empty: nobody asked.
#include <cstdint>
#include <functional>

namespace starmesh {

using ProgressFn = std::function<void(int64_t done, int64_t total)>;

}  // namespace starmesh
