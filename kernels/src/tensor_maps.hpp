#pragma once
// Tensor maps for the bulk tensor copy engine (TMA) over our activation layout, bf16
// [rows, heads, d] row-major, seen as the 3-d tensor (d, heads, rows).
#include <cuda.h>

#include <cstdint>

namespace starmesh::kernels {

// Boxes of 64 dims x box_heads heads x box_rows rows land in shared memory as one
// 128-byte-swizzled sub-tile of box_heads * box_rows rows (row = row_in_box * box_heads +
// head_in_box). Elements past the tensor's end read as zeros. False if the driver's encoder
// is missing or refuses the map.
bool make_tile_map(CUtensorMap* map, const void* base, int rows, int heads, int d, int box_heads, int box_rows);

// The copy engine addresses 16-byte aligned tensors only.
inline bool tma_addressable(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

}  // namespace starmesh::kernels
