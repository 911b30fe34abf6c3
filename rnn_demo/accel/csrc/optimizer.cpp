// The optimizer's side of a training step: one exact Adam step over a whole parameter group (dense
// gradients and the embedding table's row gradients) and the gradient norm that clipping needs.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "common.h"
#include "kernels.h"
#include "threads.h"

namespace fused {

// One Adam step (no weight decay, amsgrad or maximize) of one parameter group: every tensor i of
// params with its moments and its step count steps[i] (a float32 scalar, incremented here as torch's
// _foreach_add_ does), whose gradient is grads[i] (dense, param's shape) or, when ids[i] is given,
// rows (U, E) at the sorted unique row numbers ids[i] (U,) of a (V, E) param and zero elsewhere
// (the embedding table, rnn_demo/accel/sparse_rows.py). The arithmetic is torch's fused CPU Adam for
// float32 (torch 2.13), operation for operation, with the coefficients computed in double and
// rounded to float as it does:
//   m = fma(1 − β1, g − m, m)   (exp_avg.lerp_(grad, 1 − β1); fma(−β1, g − m, g) when 1 − β1 ≥ 0.5)
//   v = fma((1 − β2) g, g, β2 v)
//   p = p + (−lr/(1 − β1^step)) m / (√v / √(1 − β2^step) + ε)
// except for a tensor's last (numel mod 8) entries, which torch steps with scalar code that rounds
// v = fma(v, β2, ((1 − β2) g) g) instead (its vectors hold 8 floats; tests compare both parts).
// One call for the whole model: on a GRU's six small tensors torch's optimizer spends more in
// Python and dispatch than in their arithmetic.
namespace {
constexpr int64_t kTorchAdamVector = 8;

struct AdamCoefficients {
  float c1, c2, b2, e, neg_step_size, bc2_sqrt;
  bool lerp_from_grad;  // 1 − β1 ≥ 0.5: torch's lerp starts from the gradient
  AdamCoefficients(double lr, double beta1, double beta2, double eps, double step)
      : c1(static_cast<float>(1.0 - beta1)),
        c2(static_cast<float>(1.0 - beta2)),
        b2(static_cast<float>(beta2)),
        e(static_cast<float>(eps)),
        neg_step_size(static_cast<float>(-(lr / (1.0 - std::pow(beta1, step))))),
        bc2_sqrt(static_cast<float>(std::sqrt(1.0 - std::pow(beta2, step)))),
        lerp_from_grad(!(std::abs(c1) < 0.5f)) {}
};

inline float adam_first_moment(float m, float g, const AdamCoefficients& k) {
  return k.lerp_from_grad ? std::fma(k.c1 - 1.0f, g - m, g) : std::fma(k.c1, g - m, m);
}

// Entries [0, n) of a tensor span whose gradient is g; those from `tail` on are among the tensor's
// last (numel mod 8), which torch rounds differently (see above).
inline void adam_span(float* p, float* m, float* v, const float* g, int64_t n, int64_t tail,
                      const AdamCoefficients& k) {
  const int64_t vector_end = std::min(n, std::max<int64_t>(tail, 0));
#pragma omp simd
  for (int64_t j = 0; j < vector_end; ++j) {
    const float gj = g[j];
    const float mj = adam_first_moment(m[j], gj, k);
    const float vj = std::fma(k.c2 * gj, gj, v[j] * k.b2);
    m[j] = mj;
    v[j] = vj;
    p[j] = p[j] + (k.neg_step_size * mj) / (std::sqrt(vj) / k.bc2_sqrt + k.e);
  }
  for (int64_t j = vector_end; j < n; ++j) {
    const float gj = g[j];
    const float mj = adam_first_moment(m[j], gj, k);
    const float square = (k.c2 * gj) * gj;
    const float vj = std::fma(v[j], k.b2, square);
    m[j] = mj;
    v[j] = vj;
    p[j] = p[j] + (k.neg_step_size * mj) / (std::sqrt(vj) / k.bc2_sqrt + k.e);
  }
}

// Where a tensor of n entries starts torch's scalar tail.
inline int64_t adam_tail(int64_t n) { return n - n % kTorchAdamVector; }

// Runs body(begin, end) over [0, n) cut into pass_blocks(elements) blocks, one thread each.
template <typename Body>
void for_pass_blocks(int64_t n, int64_t elements, const Body& body) {
  const int64_t blocks = std::min(pass_blocks(elements), n);
  if (blocks <= 1) {
    if (n > 0) body(0, n);
    return;
  }
  WorkerPool::instance().run(blocks, [&](int64_t block) {
    body(block_begin(n, blocks, block), block_begin(n, blocks, block + 1));
  });
}

// Checks a row gradient: rows (U, E) at the sorted unique ids (U,) of a (V, E) param.
void check_rows(const at::Tensor& param, const at::Tensor& ids, const at::Tensor& rows) {
  check_ids(ids);
  TORCH_CHECK(param.dim() == 2, "a parameter with row gradients must be (V, E)");
  const int64_t num_rows = param.size(0), used = ids.size(0);
  TORCH_CHECK(rows.dim() == 2 && rows.size(0) == used && rows.size(1) == param.size(1), "rows must be (len(ids), E)");
  const int64_t* id = ids.data_ptr<int64_t>();
  for (int64_t i = 0; i < used; ++i) {
    TORCH_CHECK(id[i] >= 0 && id[i] < num_rows && (i == 0 || id[i] > id[i - 1]),
                "ids must be sorted, unique and within the table's ", num_rows, " rows");
  }
}

void adam_step_rows(at::Tensor& param, at::Tensor& exp_avg, at::Tensor& exp_avg_sq, const at::Tensor& ids,
                    const at::Tensor& rows, const AdamCoefficients& k) {
  const int64_t num_rows = param.size(0), width = param.size(1), used = ids.size(0);
  const int64_t* id = ids.data_ptr<int64_t>();
  float* p = param.data_ptr<float>();
  float* m = exp_avg.data_ptr<float>();
  float* v = exp_avg_sq.data_ptr<float>();
  const float* g = rows.data_ptr<float>();
  const std::vector<float> zeros(width, 0.0f);  // the gradient of the rows the batch did not use
  const int64_t tail = adam_tail(param.numel());
  for_pass_blocks(num_rows, param.numel(), [&](int64_t begin, int64_t end) {
    int64_t i = std::lower_bound(id, id + used, begin) - id;  // the first gradient row at or after `begin`
    for (int64_t r = begin; r < end; ++r) {
      const float* gr = zeros.data();
      if (i < used && id[i] == r) gr = g + (i++) * width;
      const int64_t at = r * width;
      adam_span(p + at, m + at, v + at, gr, width, tail - at, k);
    }
  });
}

void adam_step_dense(at::Tensor& param, at::Tensor& exp_avg, at::Tensor& exp_avg_sq, const at::Tensor& grad,
                     const AdamCoefficients& k) {
  constexpr int64_t kChunk = 1024;  // blocks split at whole chunks
  const int64_t n = param.numel(), chunks = (n + kChunk - 1) / kChunk, tail = adam_tail(n);
  float* p = param.data_ptr<float>();
  float* m = exp_avg.data_ptr<float>();
  float* v = exp_avg_sq.data_ptr<float>();
  const float* g = grad.data_ptr<float>();
  for_pass_blocks(chunks, n, [&](int64_t begin, int64_t end) {
    const int64_t from = begin * kChunk, to = std::min(n, end * kChunk);
    adam_span(p + from, m + from, v + from, g + from, to - from, tail - from, k);
  });
}
}  // namespace

void adam_step(std::vector<at::Tensor> params, std::vector<at::Tensor> exp_avgs, std::vector<at::Tensor> exp_avg_sqs,
               std::vector<at::Tensor> steps, const std::vector<at::Tensor>& grads,
               const std::vector<c10::optional<at::Tensor>>& ids, double lr, double beta1, double beta2,
               double eps) {
  const size_t n = params.size();
  TORCH_CHECK(exp_avgs.size() == n && exp_avg_sqs.size() == n && steps.size() == n && grads.size() == n &&
                  ids.size() == n, "adam_step needs one moment pair, step, gradient and ids entry per parameter");
  for (size_t i = 0; i < n; ++i) {
    check(params[i], "param"), check(exp_avgs[i], "exp_avg"), check(exp_avg_sqs[i], "exp_avg_sq");
    check(grads[i], "grad");
    TORCH_CHECK(exp_avgs[i].sizes() == params[i].sizes() && exp_avg_sqs[i].sizes() == params[i].sizes(),
                "a parameter's moments must have its shape");
    TORCH_CHECK(steps[i].device().is_cpu() && steps[i].scalar_type() == at::kFloat && steps[i].numel() == 1,
                "steps must be float32 CPU scalars");
    if (ids[i].has_value()) {
      check_rows(params[i], *ids[i], grads[i]);
    } else {
      TORCH_CHECK(grads[i].sizes() == params[i].sizes(), "a dense gradient must have its parameter's shape");
    }
  }
  for (size_t i = 0; i < n; ++i) {  // everything checked: nothing is changed when an input is wrong
    float* step = steps[i].data_ptr<float>();
    *step += 1.0f;
    const AdamCoefficients k(lr, beta1, beta2, eps, static_cast<double>(*step));
    if (ids[i].has_value()) {
      adam_step_rows(params[i], exp_avgs[i], exp_avg_sqs[i], *ids[i], grads[i], k);
    } else {
      adam_step_dense(params[i], exp_avgs[i], exp_avg_sqs[i], grads[i], k);
    }
  }
}

// sqrt of the sum of squares of every entry of every tensor (float32, contiguous, CPU), added in
// double: the gradient norm that clipping needs, in one call (torch's get_total_norm is a dozen ops).
double total_norm(const std::vector<at::Tensor>& tensors) {
  double sum = 0.0;
  for (const at::Tensor& t : tensors) {
    check(t, "tensor");
    const float* x = t.data_ptr<float>();
    const int64_t n = t.numel();
    double part = 0.0;
#pragma omp simd reduction(+ : part)
    for (int64_t j = 0; j < n; ++j) part += static_cast<double>(x[j]) * x[j];
    sum += part;
  }
  return std::sqrt(sum);
}

}  // namespace fused
