// Shared by every kernel file: the headers they build on, the argument checks and two small
// helpers (a vectorised add, where a block of rows or elements begins).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace fused {

inline void check(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kFloat && t.is_contiguous(), name,
              " must be a contiguous float32 CPU tensor");
}

inline void check_ids(const at::Tensor& ids) {
  TORCH_CHECK(ids.device().is_cpu() && ids.scalar_type() == at::kLong && ids.is_contiguous() && ids.dim() == 1,
              "ids must be a contiguous 1-d int64 CPU tensor");
}

// dst[i] += src[i] for i < n: adds a row block's share of a gradient to the first block's.
inline void add_to(float* dst, const float* src, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
}

// Where block `block` of `blocks` begins in [0, batch): blocks of equal size, to within one.
inline int64_t block_begin(int64_t batch, int64_t blocks, int64_t block) { return batch * block / blocks; }

}  // namespace fused
