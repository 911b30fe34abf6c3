// The kernels' entry points, one line of contract each (the full one stands above each definition):
// what bindings.cpp exposes to Python and what the files call of each other.
#pragma once

#include <cstdint>
#include <vector>

#include "common.h"

namespace fused {

// layers.cpp: a GRU (3 gate blocks) or LSTM (4) layer over a whole batch-first sequence. With lengths
// (B,), only the texts' real steps are computed (classifier_step); the Python calls pass none.
std::vector<at::Tensor> gru_layer_forward(const at::Tensor& x_or_table, const c10::optional<at::Tensor>& ids, double p,
                                          int64_t seed, const at::Tensor& w_ih, const at::Tensor& b_ih,
                                          const at::Tensor& w_hh, const at::Tensor& b_hh, const int64_t* lengths);
std::vector<at::Tensor> gru_forward(const at::Tensor& x_or_table, const c10::optional<at::Tensor>& ids, double p,
                                    int64_t seed, const at::Tensor& w_ih, const at::Tensor& b_ih,
                                    const at::Tensor& w_hh, const at::Tensor& b_hh);
std::vector<at::Tensor> gru_layer_backward(const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& w_ih,
                                           const at::Tensor& w_hh, const at::Tensor& states, const at::Tensor& gates,
                                           const at::Tensor& ghn, bool input_grad, const int64_t* lengths);
std::vector<at::Tensor> gru_backward(const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& w_ih,
                                     const at::Tensor& w_hh, const at::Tensor& states, const at::Tensor& gates,
                                     const at::Tensor& ghn, bool input_grad);
std::vector<at::Tensor> lstm_layer_forward(const at::Tensor& x_or_table, const c10::optional<at::Tensor>& ids,
                                           double p, int64_t seed, const at::Tensor& w_ih, const at::Tensor& b_ih,
                                           const at::Tensor& w_hh, const at::Tensor& b_hh, const int64_t* lengths);
std::vector<at::Tensor> lstm_forward(const at::Tensor& x_or_table, const c10::optional<at::Tensor>& ids, double p,
                                     int64_t seed, const at::Tensor& w_ih, const at::Tensor& b_ih,
                                     const at::Tensor& w_hh, const at::Tensor& b_hh);
std::vector<at::Tensor> lstm_layer_backward(const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& w_ih,
                                            const at::Tensor& w_hh, const at::Tensor& states, const at::Tensor& cells,
                                            const at::Tensor& gates, const at::Tensor& tanh_c, bool input_grad,
                                            const int64_t* lengths);
std::vector<at::Tensor> lstm_backward(const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& w_ih,
                                      const at::Tensor& w_hh, const at::Tensor& states, const at::Tensor& cells,
                                      const at::Tensor& gates, const at::Tensor& tanh_c, bool input_grad);

// embedding.cpp: the kernels' dropout, and an embedding look-up's gradient as (unique ids, summed rows).
at::Tensor dropout(const at::Tensor& x, double p, int64_t seed);
std::vector<at::Tensor> embedding_rows_backward(const at::Tensor& ids, const at::Tensor& grad, int64_t padding_idx,
                                                int64_t num_rows, double p, int64_t seed);

// step.cpp: a one-layer classifier's training forward and backward pass.
std::vector<at::Tensor> classifier_step(bool lstm, const at::Tensor& table, const at::Tensor& ids,
                                        const at::Tensor& lengths, const at::Tensor& labels, double p, int64_t seed,
                                        int64_t head_seed, int64_t padding_idx, bool table_grad,
                                        const at::Tensor& w_ih, const at::Tensor& b_ih, const at::Tensor& w_hh,
                                        const at::Tensor& b_hh, const at::Tensor& head_w, const at::Tensor& head_b,
                                        const c10::optional<at::Tensor>& class_weight, int64_t pooling);

// optimizer.cpp: one Adam step of a parameter group (torch's fused Adam's values), and a gradient norm.
void adam_step(std::vector<at::Tensor> params, std::vector<at::Tensor> exp_avgs, std::vector<at::Tensor> exp_avg_sqs,
               std::vector<at::Tensor> steps, const std::vector<at::Tensor>& grads,
               const std::vector<c10::optional<at::Tensor>>& ids, double lr, double beta1, double beta2, double eps);
double total_norm(const std::vector<at::Tensor>& tensors);

}  // namespace fused
