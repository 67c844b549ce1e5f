#pragma once
// A model loaded on a device, with what it computes on: the CPU thread pool (and OpenBLAS's
// thread count), the backend, the weights. Every command that serves or evaluates a model
// loads it through here, so a device spec means the same everywhere.
#include <memory>
#include <optional>
#include <string>

#include "starmesh/backend/device.hpp"
#include "starmesh/model/transformer.hpp"

namespace starmesh {

struct LoadedModel {
  explicit LoadedModel(int threads) : pool(threads) {}
  ThreadPool pool;                     // the CPU backend computes on it
  std::unique_ptr<backend_i> backend;  // outlives the model's weights
  std::optional<Transformer> model;    // set once loaded
};

// Loads the checkpoint in `dir` on `device` (auto resolved). `threads` > 0 bounds the CPU
// backend's pool and OpenBLAS's (one CPU slot); 0: every core. `on_layer`: as Transformer::load's.
Expected<std::unique_ptr<LoadedModel>> load_model(const std::string& dir, const DeviceSpec& device, int threads,
                                                  const ProgressFn& on_layer = {});

}  // namespace starmesh
