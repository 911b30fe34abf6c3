// The embedding table's side of a training step: the kernels' dropout (dropout.h) as a call of its
// own, and the table's gradient as the rows a batch used.
//
// The embedding table's training step without a dense gradient (rnn_demo/accel/sparse_rows.py). A batch
// reads a few hundred to a few thousand rows of a 10,000-30,000-row table; a dense gradient costs
// zeroing and scattering a 12 MB table (IMDB), reading it again for the clipping norm, and Adam
// reads it a third time. Here the gradient is (the rows used, their summed gradient rows) and
// Adam steps every row of the table in one pass, with a zero gradient for the rows not used:
// every weight and moment comes out bit for bit as torch's fused Adam leaves them (tests).
#include <cstdint>
#include <vector>

#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>

#include "common.h"
#include "dropout.h"
#include "kernels.h"

namespace fused {

// Dropout of x (DropoutMask); the same call on x's gradient is its backward pass.
at::Tensor dropout(const at::Tensor& x, double p, int64_t seed) {
  check(x, "x");
  const DropoutMask mask(p, seed, x.numel());
  auto out = at::empty_like(x);
  const float* in = x.data_ptr<float>();
  float* o = out.data_ptr<float>();
  const int64_t n = x.numel();
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) o[i] = mask(in[i], i);
  return out;
}

// ids (N,) int64 in [0, num_rows), grad (N, E): the gradient of an embedding look-up as (the
// sorted unique ids other than padding_idx (U,), their summed gradient rows (U, E)). A row's
// gradients are added in the order of ids, starting from zero, as torch's dense backward does.
// With p > 0, grad is that of the look-up followed by dropout (p, seed), and each of its values goes
// through the dropout mask on its way into the sum (the value dropout's backward pass would give).
std::vector<at::Tensor> embedding_rows_backward(const at::Tensor& ids, const at::Tensor& grad, int64_t padding_idx,
                                                int64_t num_rows, double p, int64_t seed) {
  check_ids(ids);
  check(grad, "grad");
  const DropoutMask mask(p, seed, grad.numel());
  TORCH_CHECK(grad.dim() == 2 && grad.size(0) == ids.size(0), "grad must be (len(ids), E)");
  const int64_t n = ids.size(0), width = grad.size(1);
  const int64_t* id = ids.data_ptr<int64_t>();
  std::vector<int64_t> slot(num_rows, -1);
  for (int64_t i = 0; i < n; ++i) {
    TORCH_CHECK(id[i] >= 0 && id[i] < num_rows, "id ", id[i], " is outside the embedding's ", num_rows, " rows");
    if (id[i] != padding_idx) slot[id[i]] = 0;
  }
  int64_t used = 0;
  for (int64_t r = 0; r < num_rows; ++r) used += slot[r] == 0;
  auto unique = at::empty({used}, ids.options());
  auto rows = at::zeros({used, width}, grad.options());
  int64_t* u = unique.data_ptr<int64_t>();
  for (int64_t r = 0, k = 0; r < num_rows; ++r) {
    if (slot[r] == 0) u[k] = r, slot[r] = k++;
  }
  const float* g = grad.data_ptr<float>();
  float* out = rows.data_ptr<float>();
  for (int64_t i = 0; i < n; ++i) {
    if (id[i] == padding_idx) continue;
    float* row = out + slot[id[i]] * width;
    const float* src = g + i * width;
    if (!mask.active()) {
#pragma omp simd
      for (int64_t j = 0; j < width; ++j) row[j] += src[j];
      continue;
    }
#pragma omp simd
    for (int64_t j = 0; j < width; ++j) row[j] += mask(src[j], i * width + j);
  }
  return {unique, rows};
}

}  // namespace fused
