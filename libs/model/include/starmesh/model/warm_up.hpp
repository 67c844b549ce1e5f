#pragma once
// GEMM plans made before serving. The CUDA backend picks the algorithm of a GEMM of few rows
// by timing its candidates on the shape's first call (tens of milliseconds for the model's
// shapes at one row count): met in the middle of serving, that held every request of a decode
// batch (a first token 90 ms late on an H100). A server runs this once at start.
#include "starmesh/model/transformer.hpp"

namespace starmesh {

// Runs one layer's projections and MLP and the LM head at 1..max_rows rows (the shapes every
// decode step, batched step and short prefill uses; every layer has the same), on the model's
// backend, and waits for the device. Nothing is kept.
Status warm_up_gemms(const Transformer& model, int max_rows);

}  // namespace starmesh
