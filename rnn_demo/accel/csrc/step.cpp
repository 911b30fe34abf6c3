// A one-layer classifier's whole training step in one call: the layer (layers.cpp), pooling, dropout,
// the linear head and the cross-entropy loss, forward and backward.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include <ATen/ops/full.h>
#include <ATen/ops/zeros.h>

#include "common.h"
#include "dropout.h"
#include "kernels.h"

namespace fused {

// One training step's forward and backward pass of a whole classifier, in one call: a GRU or LSTM
// layer that reads its words from the embedding table (LayerInput: table, ids, dropout p and seed),
// pooling over each text's real tokens (kLast: the state after its last token; kMax, kMean), dropout
// (p, head_seed) and a linear head, and torch's cross-entropy loss (mean over the batch, weighted by
// class_weight[label] when given, as nn.CrossEntropyLoss(weight) does). rnn_demo/model.py has the
// same model as torch modules; why one call: their ~40 small ops and autograd's bookkeeping around
// the layer's kernels run on one core, a large share of a step on short texts.
// Returns {loss (), the table's gradient as (unique ids, rows) (undefined when table_grad is false),
// dW_ih, dW_hh, db_ih, db_hh, dW_head, db_head}. The layer computes only the texts' real steps, on
// row blocks of equal real tokens (RowBlocks, from lengths), so no thread computes padding.
enum Pooling { kLast = 0, kMax = 1, kMean = 2 };

std::vector<at::Tensor> classifier_step(bool lstm, const at::Tensor& table, const at::Tensor& ids,
                                        const at::Tensor& lengths, const at::Tensor& labels, double p, int64_t seed,
                                        int64_t head_seed, int64_t padding_idx, bool table_grad,
                                        const at::Tensor& w_ih, const at::Tensor& b_ih, const at::Tensor& w_hh,
                                        const at::Tensor& b_hh, const at::Tensor& head_w, const at::Tensor& head_b,
                                        const c10::optional<at::Tensor>& class_weight, int64_t pooling) {
  check(head_w, "head_w"), check(head_b, "head_b");
  TORCH_CHECK(pooling == kLast || pooling == kMax || pooling == kMean, "unknown pooling ", pooling);
  TORCH_CHECK(ids.dim() == 2, "ids must be (B, T)");
  const int64_t B = ids.size(0), T = ids.size(1), H = w_hh.size(1), C = head_w.size(0);
  TORCH_CHECK(head_w.dim() == 2 && head_w.size(1) == H && head_b.numel() == C, "the head must be (C, H) and (C)");
  for (const at::Tensor* t : {&lengths, &labels}) {
    TORCH_CHECK(t->device().is_cpu() && t->scalar_type() == at::kLong && t->is_contiguous() && t->dim() == 1 &&
                    t->size(0) == B, "lengths and labels must be contiguous (B,) int64 CPU tensors");
  }
  const int64_t* len = lengths.data_ptr<int64_t>();
  const int64_t* label = labels.data_ptr<int64_t>();
  for (int64_t b = 0; b < B; ++b) {
    TORCH_CHECK(len[b] >= 1 && len[b] <= T, "length ", len[b], " of text ", b, " is not in [1, ", T, "]");
    TORCH_CHECK(label[b] >= 0 && label[b] < C, "label ", label[b], " is not one of the ", C, " classes");
  }
  const float* cw = nullptr;
  if (class_weight) {
    check(*class_weight, "class_weight");
    TORCH_CHECK(class_weight->numel() == C, "class_weight must have one weight per class");
    cw = class_weight->data_ptr<float>();
  }
  const std::vector<at::Tensor> forward = lstm ? lstm_layer_forward(table, ids, p, seed, w_ih, b_ih, w_hh, b_hh, len)
                                               : gru_layer_forward(table, ids, p, seed, w_ih, b_ih, w_hh, b_hh, len);
  const float* states = forward[0].data_ptr<float>();

  // Pooling (argmax: where each max came from, for its gradient), dropout, head, loss.
  const DropoutMask head_mask(p, head_seed, B * H);
  std::vector<float> pooled(B * H);
  std::vector<int32_t> argmax(pooling == kMax ? B * H : 0);
  for (int64_t b = 0; b < B; ++b) {
    float* out = pooled.data() + b * H;
    const float* first = states + b * T * H;
    if (pooling == kLast) {
      std::copy(first + (len[b] - 1) * H, first + len[b] * H, out);
    } else if (pooling == kMax) {  // the first step holding the maximum (or a NaN), as torch's max(dim)
      int32_t* arg = argmax.data() + b * H;
      std::copy(first, first + H, out);
      std::fill(arg, arg + H, 0);
      for (int32_t t = 1; t < len[b]; ++t) {
        const float* row = first + t * H;
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
          const bool larger = !(row[j] <= out[j]) && out[j] == out[j];  // larger, or the first NaN
          out[j] = larger ? row[j] : out[j];
          arg[j] = larger ? t : arg[j];
        }
      }
    } else {
      std::fill(out, out + H, 0.0f);
      for (int64_t t = 0; t < len[b]; ++t) add_to(out, first + t * H, H);
      for (int64_t j = 0; j < H; ++j) out[j] /= static_cast<float>(len[b]);
    }
    for (int64_t j = 0; j < H; ++j) out[j] = head_mask(out[j], b * H + j);
  }
  std::vector<float> z(B * C);  // logits
  const float* w = head_w.data_ptr<float>();
  const float* bias = head_b.data_ptr<float>();
  std::vector<double> dz(B * C);
  double total = 0.0, weights = 0.0;
  for (int64_t b = 0; b < B; ++b) {
    double top = -INFINITY;
    for (int64_t c = 0; c < C; ++c) {
      float sum = 0.0f;
      for (int64_t j = 0; j < H; ++j) sum += pooled[b * H + j] * w[c * H + j];
      z[b * C + c] = sum + bias[c];
      top = std::max(top, static_cast<double>(z[b * C + c]));
    }
    double norm = 0.0;
    for (int64_t c = 0; c < C; ++c) norm += std::exp(z[b * C + c] - top);
    const double weight = cw ? cw[label[b]] : 1.0;
    total += weight * (top + std::log(norm) - z[b * C + label[b]]);
    weights += weight;
    for (int64_t c = 0; c < C; ++c) dz[b * C + c] = weight * (std::exp(z[b * C + c] - top) / norm - (c == label[b]));
  }
  const auto options = head_w.options();
  at::Tensor loss = at::full({}, static_cast<float>(total / weights), options);

  // Backward: head, dropout, pooling (into the layer's output gradient), the layer, the table's rows.
  auto dhead_w = at::zeros({C, H}, options), dhead_b = at::zeros({C}, options);
  auto grad_out = at::zeros({B, T, H}, options);
  float* dw = dhead_w.data_ptr<float>();
  float* db = dhead_b.data_ptr<float>();
  float* go = grad_out.data_ptr<float>();
  std::vector<float> dpooled(H);
  for (int64_t b = 0; b < B; ++b) {
    std::fill(dpooled.begin(), dpooled.end(), 0.0f);
    for (int64_t c = 0; c < C; ++c) {
      const float d = static_cast<float>(dz[b * C + c] / weights);
      db[c] += d;
      for (int64_t j = 0; j < H; ++j) {
        dw[c * H + j] += d * pooled[b * H + j];
        dpooled[j] += d * w[c * H + j];
      }
    }
    float* g = go + b * T * H;
    for (int64_t j = 0; j < H; ++j) {
      const float d = head_mask(dpooled[j], b * H + j);
      if (pooling == kLast) {
        g[(len[b] - 1) * H + j] = d;
      } else if (pooling == kMax) {
        g[argmax[b * H + j] * H + j] = d;
      } else {
        for (int64_t t = 0; t < len[b]; ++t) g[t * H + j] = d / static_cast<float>(len[b]);
      }
    }
  }
  const at::Tensor& x = forward[1];
  std::vector<at::Tensor> layer = lstm ? lstm_layer_backward(grad_out, x, w_ih, w_hh, forward[0], forward[2],
                                                             forward[3], forward[4], table_grad, len)
                                       : gru_layer_backward(grad_out, x, w_ih, w_hh, forward[0], forward[2], forward[3],
                                                            table_grad, len);
  if (lstm) layer.push_back(layer[3].clone());  // the two biases' gradients: the same values
  std::vector<at::Tensor> rows(2);
  if (table_grad) {
    rows = embedding_rows_backward(ids.reshape({-1}), layer[0].reshape({-1, x.size(2)}), padding_idx, table.size(0),
                                   p, seed);
  }
  return {loss, rows[0], rows[1], layer[1], layer[2], layer[3], layer[4], dhead_w, dhead_b};
}

}  // namespace fused
