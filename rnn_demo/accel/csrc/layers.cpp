// GRU and LSTM layers' time loops with each step's gate maths fused into one pass: each layer's
// forward and backward pass over a whole sequence, one time loop per row block (row_blocks.h).
//
// PyTorch's CPU GRU runs every time step as about ten separate ATen calls forward and
// more than twenty backward; at hidden size 128 and batch 64 each call's overhead is
// larger than its arithmetic. Here a forward step is two small matmuls (x_t W_ihᵀ, h W_hhᵀ)
// and one loop over the batch that computes the gates and the new state; a backward step is
// one loop that computes every gate gradient, then the matmuls that carry them to h_{t-1} and
// x_t and add the step's share of the weight gradients. Inputs, outputs and their gradients
// are batch-first (B, T, ·), as the model holds them, and nothing is computed for all steps at
// once outside the loop: a big input-projection matmul before it and weight-gradient matmuls
// after it need (T, B, G·H) tensors (39 MB for a GRU layer on a 400-token batch of 64) and
// time-major copies of x, the output and their gradients, all streamed through memory, and the
// gate loops are memory-bound already. Gate order and equations are PyTorch's; GRU:
//   r = σ(x W_ir + b_ir + h W_hr + b_hr),  z = σ(x W_iz + b_iz + h W_hz + b_hz)
//   n = tanh(x W_in + b_in + r ⊙ (h W_hn + b_hn)),  h' = (1 − z) ⊙ n + z ⊙ h
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <vector>

#include "blas.h"
#include "common.h"
#include "kernels.h"
#include "layer_input.h"
#include "row_blocks.h"

namespace fused {
namespace {

// e^x for x in [-87, 88] to about 1 ulp (Cephes' expf polynomial), written so that the
// compiler vectorises it inline: round by the 1.5·2^23 trick, scale by building 2^n's bits.
inline float exp_approx(float x) {
  x = std::min(std::max(x, -87.0f), 88.0f);
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round(x / ln 2)
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;  // ln 2 = 0.693359375 − 2.12194440e-4 (Cody–Waite)
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

inline float sigmoid(float x) { return 1.0f / (1.0f + exp_approx(-x)); }
inline float tanh_approx(float x) { return 2.0f / (1.0f + exp_approx(-2.0f * x)) - 1.0f; }

// Checks a layer's forward inputs (x (B, T, E), w_ih (G·H, E), b_ih (G·H), w_hh (G·H, H), b_hh (G·H),
// G gate blocks) and returns {B, T, E, H}.
std::array<int64_t, 4> forward_sizes(const at::Tensor& x, const at::Tensor& w_ih, const at::Tensor& b_ih,
                                     const at::Tensor& w_hh, const at::Tensor& b_hh, int64_t gates) {
  check(x, "x"), check(w_ih, "w_ih"), check(b_ih, "b_ih"), check(w_hh, "w_hh"), check(b_hh, "b_hh");
  TORCH_CHECK(x.dim() == 3 && w_ih.dim() == 2 && w_hh.dim() == 2, "x must be (B, T, E), the weights matrices");
  const int64_t B = x.size(0), T = x.size(1), E = x.size(2), H = w_hh.size(1), gh = gates * H;
  TORCH_CHECK(w_ih.size(0) == gh && w_ih.size(1) == E && w_hh.size(0) == gh && b_ih.numel() == gh &&
                  b_hh.numel() == gh, "shape mismatch");
  TORCH_CHECK(T > 0, "Expected sequence length to be larger than 0");  // as torch's layers
  return {B, T, E, H};
}

// Checks the tensors a layer's backward pass takes, the same for GRU and LSTM (grad_out and states (B, T, H),
// x (B, T, E), w_ih (G·H, E), w_hh (G·H, H), G gate blocks) and returns {B, T, E, H}.
std::array<int64_t, 4> backward_sizes(const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& w_ih,
                                      const at::Tensor& w_hh, const at::Tensor& states, int64_t gates) {
  check(grad_out, "grad_out"), check(x, "x"), check(w_ih, "w_ih"), check(w_hh, "w_hh"), check(states, "states");
  TORCH_CHECK(grad_out.dim() == 3 && states.sizes() == grad_out.sizes(), "grad_out must be (B, T, H) like states");
  const int64_t B = grad_out.size(0), T = grad_out.size(1), H = w_hh.size(1), E = w_ih.size(1);
  TORCH_CHECK(grad_out.size(2) == H && w_ih.size(0) == gates * H && w_hh.size(0) == gates * H && x.size(0) == B &&
                  x.size(1) == T && x.size(2) == E, "shape mismatch");
  TORCH_CHECK(T > 0, "Expected sequence length to be larger than 0");
  return {B, T, E, H};
}

// What a GRU (G = 3) or LSTM (G = 4) layer's forward pass sets up before its time loop: its input x
// (LayerInput) and sizes {B, T, E, H} (checked), the output states (B, T, H), the row blocks, each
// block's scratch region (`scratch_gates` · H floats a row) and its step matmuls x_t W_ihᵀ and h W_hhᵀ.
struct ForwardSetup {
  ForwardSetup(const at::Tensor& x_or_table, const c10::optional<at::Tensor>& ids, double p, int64_t seed,
               const at::Tensor& w_ih, const at::Tensor& b_ih, const at::Tensor& w_hh, const at::Tensor& b_hh,
               int64_t gates, int64_t scratch_gates, const int64_t* lengths)
      : source(x_or_table, ids, p, seed),
        sizes(forward_sizes(source.x(), w_ih, b_ih, w_hh, b_hh, gates)),
        states(pooled_empty(kStates, {sizes[0], sizes[1], sizes[3]}, source.x().options())),
        blocks(sizes[0], sizes[1], lengths),
        scratch(blocks.count(), blocks.max_rows() * scratch_gates * sizes[3], source.x().options()),
        inputs(step_gemms(blocks, gates * sizes[3], sizes[2], w_ih.data_ptr<float>(), true)),
        recurrents(step_gemms(blocks, gates * sizes[3], sizes[3], w_hh.data_ptr<float>(), true)) {}

  const LayerInput source;
  const std::array<int64_t, 4> sizes;
  const at::Tensor states;
  const RowBlocks blocks;
  const BlockRegions scratch;
  std::vector<StepGemm> inputs, recurrents;
};

// What a GRU or LSTM layer's backward pass sets up before its time loop, for the sizes backward_sizes
// checked: dx (B, T, E) (undefined without input_grad), the row blocks and each block's step matmuls
// d_gates W_hh and, with input_grad, d_gates W_ih.
struct BackwardSetup {
  BackwardSetup(const std::array<int64_t, 4>& sizes, const at::Tensor& w_ih, const at::Tensor& w_hh, int64_t gates,
                bool input_grad, const int64_t* lengths, const at::TensorOptions& options)
      : dx(input_grad ? pooled_empty(kDx, {sizes[0], sizes[1], sizes[2]}, options) : at::Tensor()),
        blocks(sizes[0], sizes[1], lengths),
        recurrents(step_gemms(blocks, sizes[3], gates * sizes[3], w_hh.data_ptr<float>(), false)),
        inputs(input_grad ? step_gemms(blocks, sizes[2], gates * sizes[3], w_ih.data_ptr<float>(), false)
                          : std::vector<StepGemm>()),
        gh_(gates * sizes[3]),
        hidden_(sizes[3]) {}

  // Starts row block `block`'s time loop: packs its matmuls and, when its only step is step 0 (which
  // pairs with h0 = 0), zeroes its dW_hh sums `dwh`, which no step then adds to. Returns its last step.
  int64_t start_block(int64_t block, float* dwh) {
    recurrents[block].pack();
    if (dx.defined()) inputs[block].pack();
    const int64_t last = blocks.last_step(block);
    if (last == 0) std::fill(dwh, dwh + gh_ * hidden_, 0.0f);
    return last;
  }

  // The block's d_gates W_ih matmul, or none without input_grad.
  const StepGemm* input(int64_t block) const { return dx.defined() ? &inputs[block] : nullptr; }

  const at::Tensor dx;
  const RowBlocks blocks;
  std::vector<StepGemm> recurrents, inputs;

 private:
  int64_t gh_, hidden_;
};

// The matmuls that end backward step t for `rows` rows from row `begin`, the same for GRU and LSTM
// (G·H = gh gate pre-activations; d_in and d_rec, rows × gh, their gradients on the input and the
// recurrent side, one buffer for the LSTM): dW_ih += d_inᵀ x_t into dwi; dW_hh += d_recᵀ h_{t-1} into dwh
// and dh_{t-1} = dh_beta·dh_rows + d_rec W_hh (none before step 0, where h = 0); dx_t = d_in W_ih when
// `input` is given. The weight-gradient sums start at the block's last step (`first`).
void backward_step_matmuls(int64_t t, int64_t T, bool first, int64_t begin, int64_t rows, int64_t gh, int64_t H,
                           int64_t E, const float* d_in, const float* d_rec, const float* x, const float* states,
                           float* dwi, float* dwh, const StepGemm& recurrent, float dh_beta, float* dh_rows,
                           const StepGemm* input, float* dx) {
  const float beta = first ? 0.0f : 1.0f;
  gemm_tn(rows, gh, E, d_in, gh, x + (begin * T + t) * E, T * E, beta, dwi);
  if (t > 0) {
    gemm_tn(rows, gh, H, d_rec, gh, states + (begin * T + t - 1) * H, T * H, beta, dwh);
    recurrent(rows, d_rec, gh, dh_beta, dh_rows, H);
  }
  if (input != nullptr) (*input)(rows, d_in, gh, 0.0f, dx + (begin * T + t) * E, T * E);
}

// dx_t of rows [from, to) (texts that ended before step t): zero, the gradient no loss gives them.
void zero_dx_rows(float* dx, int64_t from, int64_t to, int64_t t, int64_t T, int64_t E) {
  if (dx == nullptr) return;
  for (int64_t row = from; row < to; ++row) std::fill(dx + (row * T + t) * E, dx + (row * T + t + 1) * E, 0.0f);
}

}  // namespace

// x: (B, T, E) batch-first, or, with ids (B, T), the embedding table (V, E) whose rows for ids,
// after dropout (p, seed), are x (LayerInput); w_ih: (3H, E); b_ih: (3H); w_hh: (3H, H); b_hh: (3H);
// the initial state is zero. Returns states (B, T, H) = h_1 … h_T, the layer's output, x, and for the
// backward pass gates (T, B, 3H) = [r, z, n] and ghn (T, B, H) = h W_hn + b_hn, time-major: a block's rows
// of one step are then one contiguous run, written and read back as a stream.
// With lengths (B,) (RowBlocks), only the texts' real steps are computed.
std::vector<at::Tensor> gru_layer_forward(const at::Tensor& x_or_table, const c10::optional<at::Tensor>& ids, double p,
                                          int64_t seed, const at::Tensor& w_ih, const at::Tensor& b_ih,
                                          const at::Tensor& w_hh, const at::Tensor& b_hh, const int64_t* lengths) {
  ForwardSetup layer(x_or_table, ids, p, seed, w_ih, b_ih, w_hh, b_hh, 3, 6, lengths);  // x_t W_ihᵀ, h W_hhᵀ
  const at::Tensor& x = layer.source.x();
  const int64_t B = layer.sizes[0], T = layer.sizes[1], E = layer.sizes[2], H = layer.sizes[3];  // lambdas take these
  auto gates = pooled_empty(kGates, {T, B, 3 * H}, x.options());
  auto ghn = pooled_empty(kGateAux, {T, B, H}, x.options());
  // r and z take b_ih + b_hh, n takes b_in outside and b_hn inside r ⊙ (·).
  std::vector<float> bias(b_ih.data_ptr<float>(), b_ih.data_ptr<float>() + 3 * H), zeros(H, 0.0f);
  for (int64_t j = 0; j < 2 * H; ++j) bias[j] += b_hh.data_ptr<float>()[j];
  const float* x_p = x.data_ptr<float>();
  const float* b_hn = b_hh.data_ptr<float>() + 2 * H;
  const float* b = bias.data();
  const float* h0 = zeros.data();
  float* states_p = layer.states.data_ptr<float>();
  float* gates_p = gates.data_ptr<float>();
  float* ghn_p = ghn.data_ptr<float>();
  for_row_blocks(layer.blocks, [&](int64_t block, int64_t begin, int64_t end) {
    StepGemm& input = layer.inputs[block];
    StepGemm& recurrent = layer.recurrents[block];
    input.pack(), recurrent.pack();
    float* gi = layer.scratch(block);
    float* gh = gi + (end - begin) * 3 * H;
    std::fill(gh, gh + (end - begin) * 3 * H, 0.0f);  // step 0: h = 0
    for (int64_t t = 0; t < T; ++t) {
      const int64_t rows = layer.blocks.running(block, t);
      if (rows == 0) break;
      layer.source.gather(begin, begin + rows, t);
      input(rows, x_p + (begin * T + t) * E, T * E, 0.0f, gi, 3 * H);
      if (t > 0) recurrent(rows, states_p + (begin * T + t - 1) * H, T * H, 0.0f, gh, 3 * H);
      for (int64_t i = 0; i < rows; ++i) {
        const int64_t row = begin + i;
        const float* gib = gi + i * 3 * H;
        const float* ghb = gh + i * 3 * H;
        const float* hp = t > 0 ? states_p + (row * T + t - 1) * H : h0;
        float* hn = states_p + (row * T + t) * H;
        float* gb = gates_p + (t * B + row) * 3 * H;
        float* ghn_b = ghn_p + (t * B + row) * H;
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
          const float r = sigmoid(gib[j] + ghb[j] + b[j]);
          const float z = sigmoid(gib[H + j] + ghb[H + j] + b[H + j]);
          const float hn_pre = ghb[2 * H + j] + b_hn[j];
          const float n = tanh_approx(gib[2 * H + j] + b[2 * H + j] + r * hn_pre);
          gb[j] = r;
          gb[H + j] = z;
          gb[2 * H + j] = n;
          ghn_b[j] = hn_pre;
          hn[j] = n + z * (hp[j] - n);
        }
      }
    }
  });
  return {layer.states, x, gates, ghn};
}

std::vector<at::Tensor> gru_forward(const at::Tensor& x_or_table, const c10::optional<at::Tensor>& ids, double p,
                                    int64_t seed, const at::Tensor& w_ih, const at::Tensor& b_ih,
                                    const at::Tensor& w_hh, const at::Tensor& b_hh) {
  return gru_layer_forward(x_or_table, ids, p, seed, w_ih, b_ih, w_hh, b_hh, nullptr);
}

// grad_out: (B, T, H), the gradient w.r.t. states; x and the weights as gru_forward takes them, the
// rest as it returns them. Returns dx (B, T, E) (undefined when input_grad is false) and the
// gradients of w_ih, w_hh, b_ih and b_hh. Every step's gate pre-activation gradients, input side
// d_gi and recurrent side d_gh (they differ only in the n block, scaled by r there), stay in a
// block-sized buffer: the step's matmuls take them from there to dh_{t−1} and dx_t and add the
// step's share of the weight gradients, d_giᵀ x_t and d_ghᵀ h_{t−1}, to the block's own sums.
// Why: a matmul over a block's 32 rows runs nearly as fast as one over the whole batch, and this way
// no (B, T, 3H) gradient is written out, page-faulted in and read back by matmuls after the loop.
// With lengths as gru_layer_forward had them, only the texts' real steps (grad_out must be zero
// elsewhere: no loss reads them).
std::vector<at::Tensor> gru_layer_backward(const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& w_ih,
                                           const at::Tensor& w_hh, const at::Tensor& states, const at::Tensor& gates,
                                           const at::Tensor& ghn, bool input_grad, const int64_t* lengths) {
  const auto sizes = backward_sizes(grad_out, x, w_ih, w_hh, states, 3);
  const int64_t B = sizes[0], T = sizes[1], E = sizes[2], H = sizes[3];  // lambdas take these
  check(gates, "gates"), check(ghn, "ghn");
  TORCH_CHECK(gates.numel() == T * B * 3 * H && ghn.numel() == T * B * H, "shape mismatch");
  BackwardSetup layer(sizes, w_ih, w_hh, 3, input_grad, lengths, grad_out.options());
  const RowBlocks& blocks = layer.blocks;
  const int64_t block_rows = blocks.max_rows();
  // Each block's region: the step's d_gi and d_gh, dh, its bias-gradient sums (input and recurrent
  // side) and its weight-gradient sums dW_ih, dW_hh, added up over the blocks after the loop in
  // plain loops (cheaper than zeroed partial sums and torch's sum(0) over them).
  const int64_t dh_at = block_rows * 6 * H, db_at = dh_at + block_rows * H, dwi_at = db_at + 6 * H,
                dwh_at = dwi_at + 3 * H * E;
  const BlockRegions regions(blocks.count(), dwh_at + 3 * H * H, grad_out.options());
  const std::vector<float> zeros(H, 0.0f);
  const float* go_p = grad_out.data_ptr<float>();
  const float* x_p = x.data_ptr<float>();
  const float* states_p = states.data_ptr<float>();
  const float* gates_p = gates.data_ptr<float>();
  const float* ghn_p = ghn.data_ptr<float>();
  const float* h0 = zeros.data();
  float* dx_p = input_grad ? layer.dx.data_ptr<float>() : nullptr;
  for_row_blocks(blocks, [&](int64_t block, int64_t begin, int64_t end) {
    float* region = regions(block);
    float* d_gi = region;
    float* d_gh = region + (end - begin) * 3 * H;
    float* dh_rows = region + dh_at;
    float* sum_i = region + db_at;
    float* sum_h = sum_i + 3 * H;
    float* dwi = region + dwi_at;
    float* dwh = region + dwh_at;
    std::fill(dh_rows, dh_rows + (end - begin) * H, 0.0f);
    std::fill(sum_i, sum_i + 6 * H, 0.0f);
    const int64_t last = layer.start_block(block, dwh);
    for (int64_t t = T - 1; t >= 0; --t) {
      const int64_t rows = blocks.running(block, t);
      zero_dx_rows(dx_p, begin + rows, end, t, T, E);
      if (rows == 0) continue;
      for (int64_t i = 0; i < rows; ++i) {
        const int64_t row = begin + i;
        const float* go = go_p + (row * T + t) * H;
        const float* gb = gates_p + (t * B + row) * 3 * H;
        const float* ghn_b = ghn_p + (t * B + row) * H;
        const float* hp = t > 0 ? states_p + (row * T + t - 1) * H : h0;  // the state before this step
        float* dgib = d_gi + i * 3 * H;
        float* dghb = d_gh + i * 3 * H;
        float* dhb = dh_rows + i * H;
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
          const float d = dhb[j] + go[j];
          const float r = gb[j], z = gb[H + j], n = gb[2 * H + j];
          const float dn_pre = d * (1.0f - z) * (1.0f - n * n);
          const float dz_pre = d * (hp[j] - n) * z * (1.0f - z);
          const float dr_pre = dn_pre * ghn_b[j] * r * (1.0f - r);
          dgib[j] = dr_pre;
          dgib[H + j] = dz_pre;
          dgib[2 * H + j] = dn_pre;
          dghb[j] = dr_pre;
          dghb[H + j] = dz_pre;
          dghb[2 * H + j] = dn_pre * r;
          dhb[j] = d * z;
          sum_i[j] += dr_pre;
          sum_i[H + j] += dz_pre;
          sum_i[2 * H + j] += dn_pre;
          sum_h[2 * H + j] += dn_pre * r;
        }
      }
      // dh_{t-1} = d ⊙ z (in dh_rows) + d_gh W_hh
      backward_step_matmuls(t, T, t == last, begin, rows, 3 * H, H, E, d_gi, d_gh, x_p, states_p, dwi, dwh,
                            layer.recurrents[block], 1.0f, dh_rows, layer.input(block), dx_p);
    }
  });
  const auto& options = grad_out.options();
  auto dw_ih = sum_blocks(regions, dwi_at, blocks.count(), B > 0, {3 * H, E}, options);
  auto dw_hh = sum_blocks(regions, dwh_at, blocks.count(), B > 0, {3 * H, H}, options);
  auto db = sum_blocks(regions, db_at, blocks.count(), B > 0, {2, 3 * H}, options);
  auto db_ih = db[0].clone(), db_hh = db[1].clone();
  db_hh.narrow(0, 0, 2 * H).copy_(db_ih.narrow(0, 0, 2 * H));  // r and z: the same on both sides
  return {layer.dx, dw_ih, dw_hh, db_ih, db_hh};
}

std::vector<at::Tensor> gru_backward(const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& w_ih,
                                     const at::Tensor& w_hh, const at::Tensor& states, const at::Tensor& gates,
                                     const at::Tensor& ghn, bool input_grad) {
  return gru_layer_backward(grad_out, x, w_ih, w_hh, states, gates, ghn, input_grad, nullptr);
}


// LSTM, PyTorch's gate order (i, f, g, o):
//   i, f, o = σ(·), g = tanh(·) of x W_i* + b_i* + h W_h* + b_h*;  c' = f ⊙ c + i ⊙ g;  h' = o ⊙ tanh(c')
// x: (B, T, E) batch-first or, with ids, the embedding table (as gru_forward); w_ih: (4H, E); b_ih:
// (4H); w_hh: (4H, H); b_hh: (4H); the initial state and cell are zero. Returns states (B, T, H) =
// h_1 … h_T, the layer's output, x, and for the backward pass, time-major, cells (T, B, H) =
// c_1 … c_T, gates (T, B, 4H) activated and tanh_c (T, B, H) = tanh(c).
std::vector<at::Tensor> lstm_layer_forward(const at::Tensor& x_or_table, const c10::optional<at::Tensor>& ids,
                                           double p, int64_t seed, const at::Tensor& w_ih, const at::Tensor& b_ih,
                                           const at::Tensor& w_hh, const at::Tensor& b_hh, const int64_t* lengths) {
  ForwardSetup layer(x_or_table, ids, p, seed, w_ih, b_ih, w_hh, b_hh, 4, 4, lengths);  // x_t W_ihᵀ + h W_hhᵀ
  const at::Tensor& x = layer.source.x();
  const int64_t B = layer.sizes[0], T = layer.sizes[1], E = layer.sizes[2], H = layer.sizes[3];  // lambdas take these
  auto cells = pooled_empty(kGateAux, {T, B, H}, x.options());
  auto gates = pooled_empty(kGates, {T, B, 4 * H}, x.options());
  auto tanh_c = pooled_empty(kTanhC, {T, B, H}, x.options());
  std::vector<float> bias(b_ih.data_ptr<float>(), b_ih.data_ptr<float>() + 4 * H), zeros(H, 0.0f);
  for (int64_t j = 0; j < 4 * H; ++j) bias[j] += b_hh.data_ptr<float>()[j];
  const float* x_p = x.data_ptr<float>();
  const float* b = bias.data();
  const float* c0 = zeros.data();
  float* states_p = layer.states.data_ptr<float>();
  float* cells_p = cells.data_ptr<float>();
  float* gates_p = gates.data_ptr<float>();
  float* tanh_c_p = tanh_c.data_ptr<float>();
  for_row_blocks(layer.blocks, [&](int64_t block, int64_t begin, int64_t) {
    StepGemm& input = layer.inputs[block];
    StepGemm& recurrent = layer.recurrents[block];
    input.pack(), recurrent.pack();
    float* pre = layer.scratch(block);
    for (int64_t t = 0; t < T; ++t) {
      const int64_t rows = layer.blocks.running(block, t);
      if (rows == 0) break;
      layer.source.gather(begin, begin + rows, t);
      input(rows, x_p + (begin * T + t) * E, T * E, 0.0f, pre, 4 * H);
      if (t > 0) recurrent(rows, states_p + (begin * T + t - 1) * H, T * H, 1.0f, pre, 4 * H);  // step 0: h = 0
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t row = begin + r;
        const float* pb = pre + r * 4 * H;
        const float* c_prev = t > 0 ? cells_p + ((t - 1) * B + row) * H : c0;
        float* c_next = cells_p + (t * B + row) * H;
        float* h_next = states_p + (row * T + t) * H;
        float* gb = gates_p + (t * B + row) * 4 * H;
        float* tc_b = tanh_c_p + (t * B + row) * H;
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
          const float i = sigmoid(pb[j] + b[j]);
          const float f = sigmoid(pb[H + j] + b[H + j]);
          const float g = tanh_approx(pb[2 * H + j] + b[2 * H + j]);
          const float o = sigmoid(pb[3 * H + j] + b[3 * H + j]);
          const float c = f * c_prev[j] + i * g;
          const float tc = tanh_approx(c);
          gb[j] = i;
          gb[H + j] = f;
          gb[2 * H + j] = g;
          gb[3 * H + j] = o;
          c_next[j] = c;
          tc_b[j] = tc;
          h_next[j] = o * tc;
        }
      }
    }
  });
  return {layer.states, x, cells, gates, tanh_c};
}

std::vector<at::Tensor> lstm_forward(const at::Tensor& x_or_table, const c10::optional<at::Tensor>& ids, double p,
                                     int64_t seed, const at::Tensor& w_ih, const at::Tensor& b_ih,
                                     const at::Tensor& w_hh, const at::Tensor& b_hh) {
  return lstm_layer_forward(x_or_table, ids, p, seed, w_ih, b_ih, w_hh, b_hh, nullptr);
}

// grad_out: (B, T, H), the gradient w.r.t. states; x and the weights as lstm_forward takes them, the
// rest as it returns them. Returns dx (B, T, E) (undefined when input_grad is false), the gradients
// of w_ih and w_hh, and that of either bias (the sum of the gate pre-activation gradients, the same
// on both sides), all summed per step inside the loop as in gru_backward.
std::vector<at::Tensor> lstm_layer_backward(const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& w_ih,
                                            const at::Tensor& w_hh, const at::Tensor& states, const at::Tensor& cells,
                                            const at::Tensor& gates, const at::Tensor& tanh_c, bool input_grad,
                                            const int64_t* lengths) {
  const auto sizes = backward_sizes(grad_out, x, w_ih, w_hh, states, 4);
  const int64_t B = sizes[0], T = sizes[1], E = sizes[2], H = sizes[3];  // lambdas take these
  check(cells, "cells"), check(gates, "gates"), check(tanh_c, "tanh_c");
  TORCH_CHECK(cells.numel() == T * B * H && gates.numel() == T * B * 4 * H && tanh_c.numel() == T * B * H,
              "shape mismatch");
  BackwardSetup layer(sizes, w_ih, w_hh, 4, input_grad, lengths, grad_out.options());
  const RowBlocks& blocks = layer.blocks;
  const int64_t block_rows = blocks.max_rows();
  // Each block's region (as in gru_backward): the step's d_gates, dh, dc and the block's sums.
  const int64_t dh_at = block_rows * 4 * H, dc_at = dh_at + block_rows * H, db_at = dc_at + block_rows * H,
                dwi_at = db_at + 4 * H, dwh_at = dwi_at + 4 * H * E;
  const BlockRegions regions(blocks.count(), dwh_at + 4 * H * H, grad_out.options());
  const std::vector<float> zeros(H, 0.0f);
  const float* go_p = grad_out.data_ptr<float>();
  const float* x_p = x.data_ptr<float>();
  const float* states_p = states.data_ptr<float>();
  const float* cells_p = cells.data_ptr<float>();
  const float* gates_p = gates.data_ptr<float>();
  const float* tanh_c_p = tanh_c.data_ptr<float>();
  const float* c0 = zeros.data();
  float* dx_p = input_grad ? layer.dx.data_ptr<float>() : nullptr;
  for_row_blocks(blocks, [&](int64_t block, int64_t begin, int64_t end) {
    float* region = regions(block);
    float* d_gates = region;
    float* dh_rows = region + dh_at;
    float* dc_rows = region + dc_at;
    float* sum = region + db_at;
    float* dwi = region + dwi_at;
    float* dwh = region + dwh_at;
    std::fill(dh_rows, dh_rows + (end - begin) * H, 0.0f);
    std::fill(dc_rows, dc_rows + (end - begin) * H, 0.0f);
    std::fill(sum, sum + 4 * H, 0.0f);
    const int64_t last = layer.start_block(block, dwh);
    for (int64_t t = T - 1; t >= 0; --t) {
      const int64_t rows = blocks.running(block, t);
      zero_dx_rows(dx_p, begin + rows, end, t, T, E);
      if (rows == 0) continue;
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t row = begin + r;
        const float* go = go_p + (row * T + t) * H;
        const float* gb = gates_p + (t * B + row) * 4 * H;
        const float* tc_b = tanh_c_p + (t * B + row) * H;
        const float* c_prev = t > 0 ? cells_p + ((t - 1) * B + row) * H : c0;
        float* db = d_gates + r * 4 * H;
        const float* dhb = dh_rows + r * H;
        float* dcb = dc_rows + r * H;
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
          const float d = dhb[j] + go[j];
          const float i = gb[j], f = gb[H + j], g = gb[2 * H + j], o = gb[3 * H + j];
          const float tc = tc_b[j];
          const float dct = dcb[j] + d * o * (1.0f - tc * tc);
          const float di = dct * g * i * (1.0f - i), df = dct * c_prev[j] * f * (1.0f - f);
          const float dg = dct * i * (1.0f - g * g), dout = d * tc * o * (1.0f - o);
          db[j] = di;
          db[H + j] = df;
          db[2 * H + j] = dg;
          db[3 * H + j] = dout;
          sum[j] += di;
          sum[H + j] += df;
          sum[2 * H + j] += dg;
          sum[3 * H + j] += dout;
          dcb[j] = dct * f;
        }
      }
      // dh_{t-1} = d_gates W_hh
      backward_step_matmuls(t, T, t == last, begin, rows, 4 * H, H, E, d_gates, d_gates, x_p, states_p, dwi, dwh,
                            layer.recurrents[block], 0.0f, dh_rows, layer.input(block), dx_p);
    }
  });
  const auto& options = grad_out.options();
  return {layer.dx, sum_blocks(regions, dwi_at, blocks.count(), B > 0, {4 * H, E}, options),
          sum_blocks(regions, dwh_at, blocks.count(), B > 0, {4 * H, H}, options),
          sum_blocks(regions, db_at, blocks.count(), B > 0, {4 * H}, options)};
}

std::vector<at::Tensor> lstm_backward(const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& w_ih,
                                      const at::Tensor& w_hh, const at::Tensor& states, const at::Tensor& cells,
                                      const at::Tensor& gates, const at::Tensor& tanh_c, bool input_grad) {
  return lstm_layer_backward(grad_out, x, w_ih, w_hh, states, cells, gates, tanh_c, input_grad, nullptr);
}

}  // namespace fused
