#include "starmesh/model/loaded_model.hpp"

extern "C" void openblas_set_num_threads(int);  // OpenBLAS: the CPU backend's GEMMs

namespace starmesh {

Expected<std::unique_ptr<LoadedModel>> load_model(const std::string& dir, const DeviceSpec& device, int threads,
                                                  const ProgressFn& on_layer) {
  if (threads > 0) openblas_set_num_threads(threads);
  auto loaded = std::make_unique<LoadedModel>(threads);
  SM_ASSIGN(backend, make_backend(device, loaded->pool));
  loaded->backend = std::move(backend);
  SM_ASSIGN(model, Transformer::load(*loaded->backend, dir, on_layer));
  loaded->model.emplace(std::move(model));
  return loaded;
}

}  // namespace starmesh
