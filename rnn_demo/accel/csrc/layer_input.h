// What a layer reads: its input x, or, for a model's first layer, the embedding table's rows for the
// batch's token ids with dropout applied, gathered step by step by the layer's own threads.
#pragma once

#include <algorithm>
#include <cstdint>

#include "common.h"
#include "dropout.h"
#include "row_blocks.h"

namespace fused {

// A layer's input x (B, T, E): the given tensor, or, for a model's first layer, the embedding
// table's (V, E) rows for token ids (B, T) with dropout (p, seed) applied exactly as `dropout`
// applies it, gathered by the layer itself into a (B, T, E) tensor that the backward pass reads
// like a given x. Each row block gathers its rows of a step just before the step's matmul, on its
// own thread: no separate single-threaded look-up and dropout passes (and calls) before the layer.
class LayerInput {
 public:
  LayerInput(const at::Tensor& x_or_table, const c10::optional<at::Tensor>& ids, double p, int64_t seed)
      : mask_(p, seed, 0) {
    check(x_or_table, ids ? "table" : "x");
    if (!ids) {
      TORCH_CHECK(x_or_table.dim() == 3, "x must be (B, T, E)");
      x_ = x_or_table;
      return;
    }
    const at::Tensor& table = x_or_table;
    TORCH_CHECK(table.dim() == 2, "the embedding table must be (V, E)");
    TORCH_CHECK(ids->device().is_cpu() && ids->scalar_type() == at::kLong && ids->is_contiguous() && ids->dim() == 2,
                "ids must be a contiguous (B, T) int64 CPU tensor");
    const int64_t B = ids->size(0), T = ids->size(1), E = table.size(1), V = table.size(0);
    mask_ = DropoutMask(p, seed, B * T * E);
    ids_ = ids->data_ptr<int64_t>();
    for (int64_t i = 0; i < B * T; ++i) {
      TORCH_CHECK(ids_[i] >= 0 && ids_[i] < V, "id ", ids_[i], " is outside the embedding's ", V, " rows");
    }
    table_ = table.data_ptr<float>();
    x_ = pooled_empty(kInput, {B, T, E}, table.options());
  }

  const at::Tensor& x() const { return x_; }

  // Fills rows [begin, end) of step t (when gathering; a given x is there already).
  void gather(int64_t begin, int64_t end, int64_t t) const {
    if (table_ == nullptr) return;
    const int64_t T = x_.size(1), E = x_.size(2);
    float* x = x_.data_ptr<float>();
    const DropoutMask mask = mask_;  // a copy the stores into x cannot alias: the loop vectorises
    for (int64_t row = begin; row < end; ++row) {
      const int64_t at = (row * T + t) * E;
      const float* src = table_ + ids_[row * T + t] * E;
      float* dst = x + at;
      if (!mask.active()) {
        std::copy(src, src + E, dst);
        continue;
      }
#pragma omp simd
      for (int64_t j = 0; j < E; ++j) dst[j] = mask(src[j], at + j);
    }
  }

 private:
  DropoutMask mask_;
  at::Tensor x_;
  const float* table_ = nullptr;
  const int64_t* ids_ = nullptr;
};

}  // namespace fused
