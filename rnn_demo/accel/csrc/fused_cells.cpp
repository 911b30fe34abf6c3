// GRU and LSTM layers' time loops with each step's gate maths fused into one pass.
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
// gate loops are memory-bound already (a layer's forward and backward took 1.4-2x as long that
// way). Gate order and equations are PyTorch's; GRU:
//   r = σ(x W_ir + b_ir + h W_hr + b_hr),  z = σ(x W_iz + b_iz + h W_hz + b_hz)
//   n = tanh(x W_in + b_in + r ⊙ (h W_hn + b_hn)),  h' = (1 − z) ⊙ n + z ⊙ h
//
// Threads: the rows of a batch are independent through the whole time loop, so with torch
// using P threads the batch is cut into P row blocks and each block runs its own time loop
// on its own thread, start to end, with single-threaded BLAS calls. Splitting each step's
// (64 × 128)·(128 × 384) matmul across cores instead makes the threads meet twice per step,
// and with OpenMP's passive waits every meeting wakes a sleeping core: 20–100 µs on this
// project's shared 2-core VM, more than the matmul itself (a step took 140–170 µs that way
// against 40–60 µs cut by rows, measured side by side). This needs a BLAS that can be told to
// stay on one thread from the calling thread: MKL, which PyTorch's x86 builds carry and
// export. Elsewhere (no MKL symbols) the loop runs on the calling thread with torch's matmul.
#include <torch/extension.h>

#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

#if defined(__SSE__)
#include <xmmintrin.h>
#endif

// MKL's BLAS (LP64 Fortran interface) and its per-thread thread count, as exported by
// libtorch_cpu. Weak: when absent, they are null and the portable path is used.
extern "C" {
void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k, const float* alpha,
            const float* a, const int* lda, const float* b, const int* ldb, const float* beta, float* c,
            const int* ldc) __attribute__((weak));
int MKL_Set_Num_Threads_Local(int nthreads) __attribute__((weak));
// MKL's packed GEMM: a weight matrix packed once into the kernel's internal layout is reused by
// every step's matmul (plain sgemm repacks it on every call: at 32 rows that is most of the work).
enum { kRowMajor = 101, kNoTrans = 111, kTrans = 112, kBMatrix = 162, kPacked = 151 };
size_t cblas_sgemm_pack_get_size(int identifier, int m, int n, int k) __attribute__((weak));
void cblas_sgemm_pack(int layout, int identifier, int trans, int m, int n, int k, float alpha, const float* src,
                      int ld, float* dest) __attribute__((weak));
void cblas_sgemm_compute(int layout, int transa, int transb, int m, int n, int k, const float* a, int lda,
                         const float* b, int ldb, float beta, float* c, int ldc) __attribute__((weak));
}

namespace {

constexpr int64_t kMinRowsPerThread = 8;  // below this a block's matmul is too small to be worth a thread

bool direct_blas() { return sgemm_ != nullptr && MKL_Set_Num_Threads_Local != nullptr; }

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

void check(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kFloat && t.is_contiguous(), name,
              " must be a contiguous float32 CPU tensor");
}

// C (rows × n, row stride ldc) = beta·C + A (rows × k, row stride lda) · Wᵀ, W (n × k) row-major.
void gemm_nt(int64_t rows, int64_t n, int64_t k, const float* a, int64_t lda, const float* w, float beta, float* c,
             int64_t ldc) {
  if (direct_blas()) {  // column-major view: Cᵀ = W · Aᵀ
    const int m_ = n, n_ = rows, k_ = k, lda_ = k, ldb_ = lda, ldc_ = ldc;
    const float one = 1.0f;
    sgemm_("T", "N", &m_, &n_, &k_, &one, w, &lda_, a, &ldb_, &beta, c, &ldc_);
    return;
  }
  auto A = at::from_blob(const_cast<float*>(a), {rows, k}, {lda, 1}, at::kFloat);
  auto W = at::from_blob(const_cast<float*>(w), {n, k}, at::kFloat);
  auto C = at::from_blob(c, {rows, n}, {ldc, 1}, at::kFloat);
  if (beta == 0.0f) {
    at::mm_out(C, A, W.t());
  } else {
    C.addmm_(A, W.t());
  }
}

// C (rows × n, row stride ldc) = beta·C + A (rows × k, row stride lda) · W, W (k × n) row-major.
void gemm_nn(int64_t rows, int64_t n, int64_t k, const float* a, int64_t lda, const float* w, float beta, float* c,
             int64_t ldc) {
  if (direct_blas()) {  // column-major view: Cᵀ = Wᵀ · Aᵀ
    const int m_ = n, n_ = rows, k_ = k, lda_ = n, ldb_ = lda, ldc_ = ldc;
    const float one = 1.0f;
    sgemm_("N", "N", &m_, &n_, &k_, &one, w, &lda_, a, &ldb_, &beta, c, &ldc_);
    return;
  }
  auto A = at::from_blob(const_cast<float*>(a), {rows, k}, {lda, 1}, at::kFloat);
  auto W = at::from_blob(const_cast<float*>(w), {k, n}, at::kFloat);
  auto C = at::from_blob(c, {rows, n}, {ldc, 1}, at::kFloat);
  if (beta == 0.0f) {
    at::mm_out(C, A, W);
  } else {
    C.addmm_(A, W);
  }
}

// C (n × m, row-major, dense) = beta·C + Aᵀ · X for A (rows × n, row stride lda) and X (rows × m, row
// stride ldx): one step's contribution to a weight gradient.
void gemm_tn(int64_t rows, int64_t n, int64_t m, const float* a, int64_t lda, const float* x, int64_t ldx,
             float beta, float* c) {
  if (direct_blas()) {  // column-major view: Cᵀ = beta·Cᵀ + Xᵀ · A
    const int m_ = m, n_ = n, k_ = rows, ldx_ = ldx, lda_ = lda, ldc_ = m;
    const float one = 1.0f;
    sgemm_("N", "T", &m_, &n_, &k_, &one, x, &ldx_, a, &lda_, &beta, c, &ldc_);
    return;
  }
  auto A = at::from_blob(const_cast<float*>(a), {rows, n}, {lda, 1}, at::kFloat);
  auto X = at::from_blob(const_cast<float*>(x), {rows, m}, {ldx, 1}, at::kFloat);
  auto C = at::from_blob(c, {n, m}, at::kFloat);
  if (beta == 0.0f) {
    at::mm_out(C, A.t(), X);
  } else {
    C.addmm_(A.t(), X);
  }
}

// dst[i] += src[i] for i < n: adds a row block's share of a gradient to the first block's.
void add_to(float* dst, const float* src, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
}

bool packed_blas() {
  return direct_blas() && cblas_sgemm_pack_get_size != nullptr && cblas_sgemm_pack != nullptr &&
         cblas_sgemm_compute != nullptr;
}

// Buffers for packed weights, kept between calls: glibc maps a block of this size (100–300 KB) afresh
// for every allocation, and page-faulting it in took longer than the packing itself (LSTM: 150 µs a
// call). Taken and given back on the calling thread, before and after the blocks run.
class PackedBuffers {
 public:
  struct Buffer {
    std::unique_ptr<float[]> data;
    size_t size = 0;
  };

  static Buffer take(size_t size) {  // a buffer of at least `size` floats, not zeroed
    PackedBuffers& self = instance();
    std::lock_guard<std::mutex> lock(self.mutex_);
    auto best = self.free_.end();
    for (auto it = self.free_.begin(); it != self.free_.end(); ++it) {
      if (it->size >= size && (best == self.free_.end() || it->size < best->size)) best = it;
    }
    if (best == self.free_.end()) return Buffer{std::unique_ptr<float[]>(new float[size]), size};
    Buffer buffer = std::move(*best);
    self.free_.erase(best);
    return buffer;
  }

  static void give(Buffer buffer) {
    PackedBuffers& self = instance();
    std::lock_guard<std::mutex> lock(self.mutex_);
    if (self.free_.size() < 32) self.free_.push_back(std::move(buffer));  // 4 per block and call in use at most
  }

 private:
  static PackedBuffers& instance() {
    static PackedBuffers* buffers = new PackedBuffers();  // never destroyed, like WorkerPool
    return *buffers;
  }

  std::mutex mutex_;
  std::vector<Buffer> free_;
};

// One of a time loop's matmuls for one row block: C (rows × n) = beta·C + A (rows × k) · op(W),
// for the block's rows or the first few of them (the texts still running, RowBlocks),
// op(W) = Wᵀ for W (n × k) (forward: x_t W_ihᵀ, h W_hhᵀ) or W for W (k × n) (backward: d_gates W),
// with W packed once for all steps when MKL's packed GEMM is there (single-threaded: 130 → 170
// GFLOP/s forward, 110 → 163 backward at 32 × 128 × 384 on this project's machine), else plain
// sgemm. Constructed (its buffer taken) before the blocks run, packed by pack() inside the
// block's body, on the block's thread: blocks pack in parallel and bodies do not allocate.
class StepGemm {
 public:
  StepGemm(int64_t rows, int64_t n, int64_t k, const float* w, bool transposed)
      : rows_(rows), n_(n), k_(k), w_(w), transposed_(transposed) {
    if (!packed_blas() || rows == 0) return;
    packed_ = PackedBuffers::take(cblas_sgemm_pack_get_size(kBMatrix, rows, n, k) / sizeof(float) + 1);
  }
  StepGemm(StepGemm&&) = default;
  StepGemm& operator=(StepGemm&&) = delete;
  ~StepGemm() {
    if (packed_.data) PackedBuffers::give(std::move(packed_));
  }

  void pack() {
    if (packed_.data) {
      cblas_sgemm_pack(kRowMajor, kBMatrix, transposed_ ? kTrans : kNoTrans, rows_, n_, k_, 1.0f, w_,
                       transposed_ ? k_ : n_, packed_.data.get());
    }
  }

  // The first `rows` (at most the block's) rows of A and C.
  void operator()(int64_t rows, const float* a, int64_t lda, float beta, float* c, int64_t ldc) const {
    if (packed_.data) {
      cblas_sgemm_compute(kRowMajor, kNoTrans, kPacked, rows, n_, k_, a, lda, packed_.data.get(), n_, beta, c, ldc);
    } else if (transposed_) {
      gemm_nt(rows, n_, k_, a, lda, w_, beta, c, ldc);
    } else {
      gemm_nn(rows, n_, k_, a, lda, w_, beta, c, ldc);
    }
  }

 private:
  int64_t rows_, n_, k_;
  const float* w_;
  bool transposed_;
  PackedBuffers::Buffer packed_;
};

// Keeps MKL on the calling thread while it lives.
class SingleThreadedBlas {
 public:
  SingleThreadedBlas() : active_(direct_blas()), previous_(active_ ? MKL_Set_Num_Threads_Local(1) : 0) {}
  ~SingleThreadedBlas() {
    if (active_) MKL_Set_Num_Threads_Local(previous_);
  }
  SingleThreadedBlas(const SingleThreadedBlas&) = delete;
  SingleThreadedBlas& operator=(const SingleThreadedBlas&) = delete;

 private:
  bool active_;
  int previous_;
};

#if defined(__SSE__)
unsigned int float_control_word() { return _mm_getcsr(); }
void set_float_control_word(unsigned int word) { _mm_setcsr(word); }
#else
unsigned int float_control_word() { return 0; }
void set_float_control_word(unsigned int) {}
#endif

// How many row blocks (threads) a batch of this size is cut into.
std::atomic<int64_t> block_threads{0};  // set_threads(): 0 = torch's thread count

int64_t row_blocks(int64_t batch) {
  if (!direct_blas()) return 1;
  const int64_t threads = block_threads.load() > 0 ? block_threads.load() : at::get_num_threads();
  return std::max<int64_t>(1, std::min<int64_t>(threads, batch / kMinRowsPerThread));
}

// Threads that stay alive between kernel calls: a new thread per call cost about 15 µs per
// time step of a 25-step batch (creation, waking an idle core, MKL's per-thread set-up).
// One run at a time: a second caller while one runs (another Python thread) does its blocks
// itself. After a fork the child, which has none of the parent's threads, starts a new pool
// (the app spawns its workers; a forked child can hang in OpenMP anyway, so this is not tested).
class WorkerPool {
 public:
  static WorkerPool& instance() {
    static std::mutex guard;
    static WorkerPool* pool = nullptr;
    std::lock_guard<std::mutex> lock(guard);
    if (pool == nullptr || pool->pid_ != getpid()) pool = new WorkerPool();  // never destroyed: threads outlive exit
    return *pool;
  }

  // Runs task(block) for every block in [0, blocks): block 0 on the calling thread, the rest on
  // the pool's threads (or here, when there are none to be had). task must not throw.
  void run(int64_t blocks, const std::function<void(int64_t)>& task) {
    std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
    const int64_t helpers = busy.owns_lock() ? grow(blocks - 1) : 0;
    const unsigned int csr = float_control_word();  // denormals flushed or not, as in the caller
    if (helpers > 0) {
      std::lock_guard<std::mutex> lock(mutex_);
      task_ = &task, csr_ = csr, active_ = helpers, pending_ = helpers, ++generation_;
      wake_.notify_all();
    }
    {
      SingleThreadedBlas blas;
      task(0);
      for (int64_t block = helpers + 1; block < blocks; ++block) task(block);
    }
    if (helpers > 0) {
      std::unique_lock<std::mutex> lock(mutex_);
      done_.wait(lock, [this] { return pending_ == 0; });
    }
  }

 private:
  WorkerPool() : pid_(getpid()) {}

  int64_t grow(int64_t wanted) {  // returns how many threads are there (up to wanted)
    while (static_cast<int64_t>(threads_) < wanted) {
      try {
        std::thread(&WorkerPool::loop, this, static_cast<int64_t>(threads_) + 1).detach();
      } catch (const std::system_error&) {
        break;
      }
      ++threads_;
    }
    return std::min<int64_t>(wanted, threads_);
  }

  void loop(int64_t block) {
    SingleThreadedBlas blas;
    uint64_t seen = 0;
    for (;;) {
      const std::function<void(int64_t)>* task;
      unsigned int csr;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        if (block > active_) continue;
        task = task_, csr = csr_;
      }
      set_float_control_word(csr);
      (*task)(block);
      std::lock_guard<std::mutex> lock(mutex_);
      if (--pending_ == 0) done_.notify_one();
    }
  }

  const pid_t pid_;
  std::mutex busy_;  // held for a whole run
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  size_t threads_ = 0;
  uint64_t generation_ = 0;
  const std::function<void(int64_t)>* task_ = nullptr;
  unsigned int csr_ = 0;
  int64_t active_ = 0, pending_ = 0;
};

// The large tensors of a call (the output, the gate values saved for the backward pass, dx) come
// from buffers kept between calls and reused once nothing else refers to them (the pool holds the
// only reference). A fresh tensor that size is memory that glibc maps afresh and the OS zeroes page
// by page on first touch: a 39 MB one (T = 400, B = 64, 3H = 384) took 14 ms to allocate and fill
// against 5 ms to refill (13 MB: 4.5 against 1.4 ms), and reusing its buffers took 31% (GRU) and
// 37% (LSTM) off a T = 400 forward pass. One list per kind of tensor, so that a buffer goes to the
// same role in the next batch; a request larger than every free buffer of its kind frees those.
// Batches of varying length therefore settle on buffers for the longest one seen, held until the
// process ends: about the memory that batch needs anyway (150 MB for two GRU layers at T = 400).
enum BufferKind { kStates, kGates, kGateAux, kTanhC, kDx, kInput, kKinds };

at::Tensor pooled_empty(BufferKind kind, at::IntArrayRef sizes, const at::TensorOptions& options) {
  int64_t numel = 1;
  for (const int64_t size : sizes) numel *= size;
  if (numel < (int64_t{1} << 18)) return at::empty(sizes, options);  // under 1 MB: malloc reuses these itself
  struct Pool {
    pid_t pid = getpid();
    std::vector<at::Tensor> buffers[kKinds];
  };
  static std::mutex guard;
  static Pool* pool = nullptr;
  std::lock_guard<std::mutex> lock(guard);
  if (pool == nullptr || pool->pid != getpid()) pool = new Pool();  // never destroyed (as WorkerPool); a fork's own
  std::vector<at::Tensor>& buffers = pool->buffers[kind];
  const auto is_free = [&](const at::Tensor& buffer) {
    return buffer.storage().use_count() == 1 && buffer.dtype() == options.dtype();
  };
  const at::Tensor* best = nullptr;
  for (const at::Tensor& buffer : buffers) {
    if (is_free(buffer) && buffer.numel() >= numel && (best == nullptr || buffer.numel() < best->numel())) {
      best = &buffer;
    }
  }
  if (best == nullptr) {
    buffers.erase(std::remove_if(buffers.begin(), buffers.end(), is_free), buffers.end());  // all too small
    buffers.push_back(at::empty({numel}, options));
    best = &buffers.back();
  }
  return best->narrow(0, 0, numel).view(sizes);
}

inline int64_t block_begin(int64_t batch, int64_t blocks, int64_t block) { return batch * block / blocks; }

// The memory a row block's thread writes at every step (the step's gate pre-activations or their
// gradients, dh and dc, the weight- and bias-gradient sums) as one region per block, the regions
// 256 KB apart. Side by side (one (B, 3H) buffer cut by rows), the two 32-row blocks of a GRU
// forward pass (T = 22) on two threads took 1.18-1.34x as long as one block on one thread; with
// the regions 256 KB apart 1.05-1.13x (separate allocations 1.08-1.13x; gaps of 64 B, 4 KB or to
// the next page did no better than none). Measured on this project's 2-core AMD EPYC VM,
// interleaved in one process; the likely cause is the cores' prefetchers reaching into lines the
// other core is writing. The backward passes and the LSTM, which lost less (1.06-1.15x), did not
// change measurably; they keep their per-block memory the same way. The gaps are never touched,
// so they cost address space, not memory.
class BlockRegions {
 public:
  BlockRegions(int64_t blocks, int64_t floats, const at::TensorOptions& options)
      : stride_((floats + kLine - 1) / kLine * kLine + kGap),
        memory_(at::empty({std::max<int64_t>(blocks, 1) * stride_ + kLine}, options)) {}

  float* operator()(int64_t block) const {  // block's region, 64-byte aligned
    const auto base = reinterpret_cast<uintptr_t>(memory_.data_ptr<float>());
    return reinterpret_cast<float*>((base + 63) & ~uintptr_t{63}) + block * stride_;
  }

 private:
  static constexpr int64_t kLine = 16;  // floats per 64-byte cache line
  static constexpr int64_t kGap = int64_t{1} << 16;  // floats: 256 KB
  int64_t stride_;
  at::Tensor memory_;
};

// Dropout with a counter-based random stream: element i of a tensor is kept when a hash of
// (seed, i) lands at or above p of the 24-bit range, and kept values are scaled by 1/(1 − p).
// The same mask on the gradient is the backward pass, so no mask is stored. torch's CPU
// bernoulli_ draws from one sequential generator at ~9 ns per element (16 ms for an IMDB
// batch's embeddings); the loops using this are vectorised and ~30x faster.
inline uint32_t mix32(uint32_t x) {  // "lowbias32" integer hash (C. Wellons)
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

class DropoutMask {
 public:
  DropoutMask(double p, int64_t seed, int64_t numel)
      : lo_(static_cast<uint32_t>(seed)),
        hi_(static_cast<uint32_t>(static_cast<uint64_t>(seed) >> 32)),
        threshold_(static_cast<uint32_t>(std::llround(p * 16777216.0))),
        scale_(static_cast<float>(1.0 / (1.0 - p))) {
    TORCH_CHECK(p >= 0.0 && p < 1.0, "dropout probability must be in [0, 1)");
    TORCH_CHECK(numel < (int64_t{1} << 32), "tensor too large for this dropout");
  }

  bool active() const { return threshold_ > 0; }

  // v, element i of the tensor, after dropout (v itself when p = 0: v · 1.0f).
  float operator()(float v, int64_t i) const {
    const uint32_t h = mix32(mix32(static_cast<uint32_t>(i) ^ lo_) + hi_);
    return (h >> 8) >= threshold_ ? v * scale_ : 0.0f;
  }

 private:
  uint32_t lo_, hi_, threshold_;
  float scale_;
};

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
    const DropoutMask mask = mask_;  // a copy the stores into x cannot alias: the loop vectorises (7x faster)
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

// A batch's B rows cut into row_blocks(B) blocks, one thread each, and how many of a block's rows
// each of the T steps computes. Without lengths, blocks hold equal numbers of rows and every row
// runs all T steps, padding included (a layer's output is then defined everywhere, as torch's).
// With the texts' lengths (classifier_step, whose loss reads only real positions), step t computes
// the rows from the block's first up to its last text still running at t, and the blocks are cut
// to hold equal numbers of real tokens: BatchLoader sorts a batch by decreasing length, so those
// rows are exactly the texts still running and padding costs neither thread anything (unsorted
// lengths are right too, with less saved). States past a text's end are then left unset, and its
// gradients there (zero: no loss reads them) are not computed but set.
class RowBlocks {
 public:
  RowBlocks(int64_t batch, int64_t steps, const int64_t* lengths = nullptr)
      : steps_(steps), bounds_(row_blocks(batch) + 1, batch) {
    const int64_t blocks = count();
    for (int64_t block = 0; block < blocks; ++block) bounds_[block] = block_begin(batch, blocks, block);
    if (lengths == nullptr || batch == 0) return;
    std::vector<int64_t> before(batch + 1, 0);  // real tokens in rows [0, i)
    for (int64_t i = 0; i < batch; ++i) before[i + 1] = before[i] + lengths[i];
    for (int64_t block = 1; block < blocks; ++block) {  // the cut nearest an equal share, each block non-empty
      const int64_t target = before[batch] * block / blocks;
      int64_t cut = std::max(bounds_[block - 1] + 1, int64_t{1});
      while (cut < batch - (blocks - block) && before[cut + 1] <= target) ++cut;
      if (cut < batch - (blocks - block) && target - before[cut] > before[cut + 1] - target) ++cut;
      bounds_[block] = cut;
    }
    running_.assign(blocks * steps, 0);
    for (int64_t block = 0; block < blocks; ++block) {
      for (int64_t row = begin(block); row < end(block); ++row) {
        for (int64_t t = 0; t < std::min(lengths[row], steps); ++t) running_[block * steps + t] = row - begin(block) + 1;
      }
    }
  }

  int64_t count() const { return static_cast<int64_t>(bounds_.size()) - 1; }
  int64_t begin(int64_t block) const { return bounds_[block]; }
  int64_t end(int64_t block) const { return bounds_[block + 1]; }
  int64_t max_rows() const {
    int64_t most = 0;
    for (int64_t block = 0; block < count(); ++block) most = std::max(most, end(block) - begin(block));
    return most;
  }
  // Step t computes the block's rows [begin, begin + running(block, t)); none after its last step.
  int64_t running(int64_t block, int64_t t) const {
    return running_.empty() ? end(block) - begin(block) : running_[block * steps_ + t];
  }
  int64_t last_step(int64_t block) const {
    int64_t t = steps_ - 1;
    while (t > 0 && running(block, t) == 0) --t;
    return t;
  }

 private:
  int64_t steps_;
  std::vector<int64_t> bounds_;   // block b is rows [bounds_[b], bounds_[b + 1])
  std::vector<int64_t> running_;  // (blocks, steps), empty without lengths
};

// Runs body(block, begin, end) over the row blocks, one thread each (the caller sizes per-block
// buffers by the same RowBlocks). body must not throw: it only does arithmetic on memory allocated
// before the call.
template <typename Body>
void for_row_blocks(const RowBlocks& blocks, const Body& body) {
  const std::function<void(int64_t)> run = [&](int64_t block) {
    const int64_t begin = blocks.begin(block), end = blocks.end(block);
    if (end > begin) body(block, begin, end);  // an empty batch: nothing to do
  };
  if (blocks.count() == 1) {  // on this thread, with single-threaded BLAS too (the other core would be
    SingleThreadedBlas blas;  // woken for each of a step's 2-4 small matmuls: 2.3x as long at B = 8)
    run(0);
    return;
  }
  WorkerPool::instance().run(blocks.count(), run);
}

// One StepGemm per row block.
std::vector<StepGemm> step_gemms(const RowBlocks& blocks, int64_t n, int64_t k, const float* w, bool transposed) {
  std::vector<StepGemm> gemms;
  gemms.reserve(blocks.count());
  for (int64_t block = 0; block < blocks.count(); ++block) {
    gemms.emplace_back(blocks.end(block) - blocks.begin(block), n, k, w, transposed);
  }
  return gemms;
}

// The matmuls that end backward step t for `rows` rows from row `begin`, the same for GRU and LSTM
// (G·H = gh gate pre-activations; d_in and d_rec, rows × gh, their gradients on the input and the
// recurrent side, one buffer for the LSTM): dW_ih += d_inᵀ x_t into dwi; dW_hh += d_recᵀ h_{t-1} into dwh
// and dh_{t-1} = dh_beta·dh_rows + d_rec W_hh (none before step 0, where h = 0); dx_t = d_in W_ih when
// `input` is given. The weight-gradient sums start at the block's last step (`first`).
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

// A gradient of shape `sizes` from the row blocks' partial sums kept in their regions at `offset`:
// block 0's, then the others' added in order; zeros when no block ran (an empty batch).
at::Tensor sum_blocks(const BlockRegions& regions, int64_t offset, int64_t blocks, bool ran, at::IntArrayRef sizes,
                      const at::TensorOptions& options) {
  auto out = at::empty(sizes, options);
  if (!ran) return out.zero_();
  const int64_t n = out.numel();
  float* o = out.data_ptr<float>();
  std::copy(regions(0) + offset, regions(0) + offset + n, o);
  for (int64_t block = 1; block < blocks; ++block) add_to(o, regions(block) + offset, n);
  return out;
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
  const LayerInput source(x_or_table, ids, p, seed);
  const at::Tensor& x = source.x();
  const auto sizes = forward_sizes(x, w_ih, b_ih, w_hh, b_hh, 3);  // (plain names: lambdas capture them)
  const int64_t B = sizes[0], T = sizes[1], E = sizes[2], H = sizes[3];
  auto states = pooled_empty(kStates, {B, T, H}, x.options());
  auto gates = pooled_empty(kGates, {T, B, 3 * H}, x.options());
  auto ghn = pooled_empty(kGateAux, {T, B, H}, x.options());
  // r and z take b_ih + b_hh, n takes b_in outside and b_hn inside r ⊙ (·).
  std::vector<float> bias(b_ih.data_ptr<float>(), b_ih.data_ptr<float>() + 3 * H), zeros(H, 0.0f);
  for (int64_t j = 0; j < 2 * H; ++j) bias[j] += b_hh.data_ptr<float>()[j];
  const RowBlocks blocks(B, T, lengths);
  const BlockRegions scratch(blocks.count(), blocks.max_rows() * 6 * H, x.options());  // x_t W_ihᵀ, h W_hhᵀ
  auto inputs = step_gemms(blocks, 3 * H, E, w_ih.data_ptr<float>(), true);
  auto recurrents = step_gemms(blocks, 3 * H, H, w_hh.data_ptr<float>(), true);
  const float* x_p = x.data_ptr<float>();
  const float* b_hn = b_hh.data_ptr<float>() + 2 * H;
  const float* b = bias.data();
  const float* h0 = zeros.data();
  float* states_p = states.data_ptr<float>();
  float* gates_p = gates.data_ptr<float>();
  float* ghn_p = ghn.data_ptr<float>();
  for_row_blocks(blocks, [&](int64_t block, int64_t begin, int64_t end) {
    StepGemm& input = inputs[block];
    StepGemm& recurrent = recurrents[block];
    input.pack(), recurrent.pack();
    float* gi = scratch(block);
    float* gh = gi + (end - begin) * 3 * H;
    std::fill(gh, gh + (end - begin) * 3 * H, 0.0f);  // step 0: h = 0
    for (int64_t t = 0; t < T; ++t) {
      const int64_t rows = blocks.running(block, t);
      if (rows == 0) break;
      source.gather(begin, begin + rows, t);
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
  return {states, x, gates, ghn};
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
// A matmul over a block's 32 rows runs at 93-95% of the speed of one over 512 (MKL, one thread,
// 3H × E and 3H × H outputs), and this way no (B, T, 3H) gradient is written out, page-faulted
// in and read back by matmuls after the loop (the backward pass took 1.2-1.7x as long that way).
// With lengths as gru_layer_forward had them, only the texts' real steps (grad_out must be zero
// elsewhere: no loss reads them).
std::vector<at::Tensor> gru_layer_backward(const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& w_ih,
                                           const at::Tensor& w_hh, const at::Tensor& states, const at::Tensor& gates,
                                           const at::Tensor& ghn, bool input_grad, const int64_t* lengths) {
  check(grad_out, "grad_out"), check(x, "x"), check(w_ih, "w_ih"), check(w_hh, "w_hh"), check(states, "states");
  check(gates, "gates"), check(ghn, "ghn");
  TORCH_CHECK(grad_out.dim() == 3 && states.sizes() == grad_out.sizes(), "grad_out must be (B, T, H) like states");
  const int64_t B = grad_out.size(0), T = grad_out.size(1), H = w_hh.size(1), E = w_ih.size(1);
  TORCH_CHECK(grad_out.size(2) == H && w_ih.size(0) == 3 * H && w_hh.size(0) == 3 * H && x.size(0) == B &&
                  x.size(1) == T && x.size(2) == E && gates.numel() == T * B * 3 * H && ghn.numel() == T * B * H,
              "shape mismatch");
  TORCH_CHECK(T > 0, "Expected sequence length to be larger than 0");
  auto dx = input_grad ? pooled_empty(kDx, {B, T, E}, grad_out.options()) : at::Tensor();
  const RowBlocks blocks(B, T, lengths);
  const int64_t block_rows = blocks.max_rows();
  // Each block's region: the step's d_gi and d_gh, dh, its bias-gradient sums (input and recurrent
  // side) and its weight-gradient sums dW_ih, dW_hh, added up over the blocks after the loop in
  // plain loops (zeroed partial sums and torch's sum(0) over them cost 0.6 ms a call).
  const int64_t dh_at = block_rows * 6 * H, db_at = dh_at + block_rows * H, dwi_at = db_at + 6 * H,
                dwh_at = dwi_at + 3 * H * E;
  const BlockRegions regions(blocks.count(), dwh_at + 3 * H * H, grad_out.options());
  auto recurrents = step_gemms(blocks, H, 3 * H, w_hh.data_ptr<float>(), false);
  auto inputs = input_grad ? step_gemms(blocks, E, 3 * H, w_ih.data_ptr<float>(), false) : std::vector<StepGemm>();
  const std::vector<float> zeros(H, 0.0f);
  const float* go_p = grad_out.data_ptr<float>();
  const float* x_p = x.data_ptr<float>();
  const float* states_p = states.data_ptr<float>();
  const float* gates_p = gates.data_ptr<float>();
  const float* ghn_p = ghn.data_ptr<float>();
  const float* h0 = zeros.data();
  float* dx_p = input_grad ? dx.data_ptr<float>() : nullptr;
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
    const int64_t last = blocks.last_step(block);
    if (last == 0) std::fill(dwh, dwh + 3 * H * H, 0.0f);  // the only step pairs with h0 = 0
    StepGemm& recurrent = recurrents[block];
    recurrent.pack();
    if (input_grad) inputs[block].pack();
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
                            recurrent, 1.0f, dh_rows, input_grad ? &inputs[block] : nullptr, dx_p);
    }
  });
  const auto& options = grad_out.options();
  auto dw_ih = sum_blocks(regions, dwi_at, blocks.count(), B > 0, {3 * H, E}, options);
  auto dw_hh = sum_blocks(regions, dwh_at, blocks.count(), B > 0, {3 * H, H}, options);
  auto db = sum_blocks(regions, db_at, blocks.count(), B > 0, {2, 3 * H}, options);
  auto db_ih = db[0].clone(), db_hh = db[1].clone();
  db_hh.narrow(0, 0, 2 * H).copy_(db_ih.narrow(0, 0, 2 * H));  // r and z: the same on both sides
  return {dx, dw_ih, dw_hh, db_ih, db_hh};
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
  const LayerInput source(x_or_table, ids, p, seed);
  const at::Tensor& x = source.x();
  const auto sizes = forward_sizes(x, w_ih, b_ih, w_hh, b_hh, 4);  // (plain names: lambdas capture them)
  const int64_t B = sizes[0], T = sizes[1], E = sizes[2], H = sizes[3];
  auto states = pooled_empty(kStates, {B, T, H}, x.options());
  auto cells = pooled_empty(kGateAux, {T, B, H}, x.options());
  auto gates = pooled_empty(kGates, {T, B, 4 * H}, x.options());
  auto tanh_c = pooled_empty(kTanhC, {T, B, H}, x.options());
  std::vector<float> bias(b_ih.data_ptr<float>(), b_ih.data_ptr<float>() + 4 * H), zeros(H, 0.0f);
  for (int64_t j = 0; j < 4 * H; ++j) bias[j] += b_hh.data_ptr<float>()[j];
  const RowBlocks blocks(B, T, lengths);
  const BlockRegions scratch(blocks.count(), blocks.max_rows() * 4 * H, x.options());  // x_t W_ihᵀ + h W_hhᵀ
  auto inputs = step_gemms(blocks, 4 * H, E, w_ih.data_ptr<float>(), true);
  auto recurrents = step_gemms(blocks, 4 * H, H, w_hh.data_ptr<float>(), true);
  const float* x_p = x.data_ptr<float>();
  const float* b = bias.data();
  const float* c0 = zeros.data();
  float* states_p = states.data_ptr<float>();
  float* cells_p = cells.data_ptr<float>();
  float* gates_p = gates.data_ptr<float>();
  float* tanh_c_p = tanh_c.data_ptr<float>();
  for_row_blocks(blocks, [&](int64_t block, int64_t begin, int64_t) {
    StepGemm& input = inputs[block];
    StepGemm& recurrent = recurrents[block];
    input.pack(), recurrent.pack();
    float* pre = scratch(block);
    for (int64_t t = 0; t < T; ++t) {
      const int64_t rows = blocks.running(block, t);
      if (rows == 0) break;
      source.gather(begin, begin + rows, t);
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
  return {states, x, cells, gates, tanh_c};
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
  check(grad_out, "grad_out"), check(x, "x"), check(w_ih, "w_ih"), check(w_hh, "w_hh"), check(states, "states");
  check(cells, "cells"), check(gates, "gates"), check(tanh_c, "tanh_c");
  TORCH_CHECK(grad_out.dim() == 3 && states.sizes() == grad_out.sizes(), "grad_out must be (B, T, H) like states");
  const int64_t B = grad_out.size(0), T = grad_out.size(1), H = w_hh.size(1), E = w_ih.size(1);
  TORCH_CHECK(grad_out.size(2) == H && w_ih.size(0) == 4 * H && w_hh.size(0) == 4 * H && x.size(0) == B &&
                  x.size(1) == T && x.size(2) == E && cells.numel() == T * B * H && gates.numel() == T * B * 4 * H &&
                  tanh_c.numel() == T * B * H,
              "shape mismatch");
  TORCH_CHECK(T > 0, "Expected sequence length to be larger than 0");
  auto dx = input_grad ? pooled_empty(kDx, {B, T, E}, grad_out.options()) : at::Tensor();
  const RowBlocks blocks(B, T, lengths);
  const int64_t block_rows = blocks.max_rows();
  // Each block's region (as in gru_backward): the step's d_gates, dh, dc and the block's sums.
  const int64_t dh_at = block_rows * 4 * H, dc_at = dh_at + block_rows * H, db_at = dc_at + block_rows * H,
                dwi_at = db_at + 4 * H, dwh_at = dwi_at + 4 * H * E;
  const BlockRegions regions(blocks.count(), dwh_at + 4 * H * H, grad_out.options());
  auto recurrents = step_gemms(blocks, H, 4 * H, w_hh.data_ptr<float>(), false);
  auto inputs = input_grad ? step_gemms(blocks, E, 4 * H, w_ih.data_ptr<float>(), false) : std::vector<StepGemm>();
  const std::vector<float> zeros(H, 0.0f);
  const float* go_p = grad_out.data_ptr<float>();
  const float* x_p = x.data_ptr<float>();
  const float* states_p = states.data_ptr<float>();
  const float* cells_p = cells.data_ptr<float>();
  const float* gates_p = gates.data_ptr<float>();
  const float* tanh_c_p = tanh_c.data_ptr<float>();
  const float* c0 = zeros.data();
  float* dx_p = input_grad ? dx.data_ptr<float>() : nullptr;
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
    const int64_t last = blocks.last_step(block);
    if (last == 0) std::fill(dwh, dwh + 4 * H * H, 0.0f);  // the only step pairs with h0 = 0
    StepGemm& recurrent = recurrents[block];
    recurrent.pack();
    if (input_grad) inputs[block].pack();
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
                            recurrent, 0.0f, dh_rows, input_grad ? &inputs[block] : nullptr, dx_p);
    }
  });
  const auto& options = grad_out.options();
  return {dx, sum_blocks(regions, dwi_at, blocks.count(), B > 0, {4 * H, E}, options),
          sum_blocks(regions, dwh_at, blocks.count(), B > 0, {4 * H, H}, options),
          sum_blocks(regions, db_at, blocks.count(), B > 0, {4 * H}, options)};
}

std::vector<at::Tensor> lstm_backward(const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& w_ih,
                                      const at::Tensor& w_hh, const at::Tensor& states, const at::Tensor& cells,
                                      const at::Tensor& gates, const at::Tensor& tanh_c, bool input_grad) {
  return lstm_layer_backward(grad_out, x, w_ih, w_hh, states, cells, gates, tanh_c, input_grad, nullptr);
}

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

// The embedding table's training step without a dense gradient (rnn_demo/sparse_rows.py). A batch
// reads a few hundred to a few thousand rows of a 10,000-30,000-row table; a dense gradient costs
// zeroing and scattering a 12 MB table (IMDB), reading it again for the clipping norm, and Adam
// reads it a third time. Here the gradient is (the rows used, their summed gradient rows) and
// Adam steps every row of the table in one pass, with a zero gradient for the rows not used:
// every weight and moment comes out bit for bit as torch's fused Adam leaves them (tests).

namespace {
constexpr int64_t kMinElementsPerThread = 1 << 16;  // a pass over fewer is not worth waking a core

// Blocks (threads) for a memory-bound pass over n elements.
int64_t pass_blocks(int64_t n) {
  const int64_t threads = block_threads.load() > 0 ? block_threads.load() : at::get_num_threads();
  return std::max<int64_t>(1, std::min<int64_t>(threads, n / kMinElementsPerThread));
}

void check_ids(const at::Tensor& ids) {
  TORCH_CHECK(ids.device().is_cpu() && ids.scalar_type() == at::kLong && ids.is_contiguous() && ids.dim() == 1,
              "ids must be a contiguous 1-d int64 CPU tensor");
}
}  // namespace

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

// One training step's forward and backward pass of a whole classifier, in one call: a GRU or LSTM
// layer that reads its words from the embedding table (LayerInput: table, ids, dropout p and seed),
// pooling over each text's real tokens (kLast: the state after its last token; kMax, kMean), dropout
// (p, head_seed) and a linear head, and torch's cross-entropy loss (mean over the batch, weighted by
// class_weight[label] when given, as nn.CrossEntropyLoss(weight) does). rnn_demo/model.py has the
// same model as torch modules; in a Rotten Tomatoes step (~1,400 tokens) their ~40 small ops and
// autograd's bookkeeping around the layer's kernels took ~2 ms of ~10, all on one core.
// Returns {loss (), the table's gradient as (unique ids, rows) (undefined when table_grad is false),
// dW_ih, dW_hh, db_ih, db_hh, dW_head, db_head}. The layer computes only the texts' real steps, on
// row blocks of equal real tokens (RowBlocks, from lengths): 3.7% of a Rotten Tomatoes epoch's padded
// steps and 1.7% of an IMDB epoch's are padding; the call ran 0.7-3.5% faster on two threads, 3.6-3.9%
// on one (six runs interleaved batch by batch; IMDB 1.6-2.0%).
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

// One Adam step (no weight decay, amsgrad or maximize) of one parameter group: every tensor i of
// params with its moments and its step count steps[i] (a float32 scalar, incremented here as torch's
// _foreach_add_ does), whose gradient is grads[i] (dense, param's shape) or, when ids[i] is given,
// rows (U, E) at the sorted unique row numbers ids[i] (U,) of a (V, E) param and zero elsewhere
// (the embedding table, rnn_demo/sparse_rows.py). The arithmetic is torch's fused CPU Adam for
// float32 (torch 2.13), operation for operation, with the coefficients computed in double and
// rounded to float as it does:
//   m = fma(1 − β1, g − m, m)   (exp_avg.lerp_(grad, 1 − β1); fma(−β1, g − m, g) when 1 − β1 ≥ 0.5)
//   v = fma((1 − β2) g, g, β2 v)
//   p = p + (−lr/(1 − β1^step)) m / (√v / √(1 − β2^step) + ε)
// except for a tensor's last (numel mod 8) entries, which torch steps with scalar code that rounds
// v = fma(v, β2, ((1 − β2) g) g) instead (its vectors hold 8 floats; tests compare both parts).
// One call for the whole model: torch's optimizer took about 0.25 ms of Python and dispatch per
// Rotten Tomatoes step for a GRU's six small tensors, more than their arithmetic.
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

// How many threads the kernels use at most (0: torch's thread count, the default).
void set_threads(int64_t threads) { block_threads.store(std::max<int64_t>(0, threads)); }

// How many threads the kernels split a batch of this size over (1: the portable path).
int64_t threads_for_batch(int64_t batch) { return row_blocks(batch); }

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("gru_forward", &gru_forward, "GRU layer forward over a whole sequence (batch-first)", py::arg("x"),
        py::arg("ids"), py::arg("p"), py::arg("seed"), py::arg("w_ih"), py::arg("b_ih"), py::arg("w_hh"),
        py::arg("b_hh"));
  m.def("gru_backward", &gru_backward, "GRU layer backward over a whole sequence (batch-first)");
  m.def("lstm_forward", &lstm_forward, "LSTM layer forward over a whole sequence (batch-first)", py::arg("x"),
        py::arg("ids"), py::arg("p"), py::arg("seed"), py::arg("w_ih"), py::arg("b_ih"), py::arg("w_hh"),
        py::arg("b_hh"));
  m.def("lstm_backward", &lstm_backward, "LSTM layer backward over a whole sequence (batch-first)");
  m.def("dropout", &dropout, "dropout from a counter-based random stream (its own backward)");
  m.def("threads_for_batch", &threads_for_batch, "threads a batch of this size is split over");
  m.def("set_threads", &set_threads, "the most threads the kernels use (0: torch's thread count)");
  m.def("embedding_rows_backward", &embedding_rows_backward, "an embedding's gradient as (unique ids, summed rows)",
        py::arg("ids"), py::arg("grad"), py::arg("padding_idx"), py::arg("num_rows"), py::arg("p") = 0.0,
        py::arg("seed") = 0);
  m.def("adam_step", &adam_step, "Adam step of a parameter group, dense or row gradients (torch's fused Adam's values)");
  m.def("classifier_step", &classifier_step, "a classifier's whole training forward and backward pass");
  m.def("total_norm", &total_norm, "2-norm of a list of float32 tensors, summed in double");
}
