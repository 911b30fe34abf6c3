// The matrix products the kernels run inside their time loops: MKL's BLAS called directly (one
// thread, packed weights) where torch carries it, torch's matmul elsewhere.
#pragma once

#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include <ATen/ops/from_blob.h>
#include <ATen/ops/mm.h>

#include "common.h"

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

namespace fused {

inline bool direct_blas() { return sgemm_ != nullptr && MKL_Set_Num_Threads_Local != nullptr; }

// C (rows × n, row stride ldc) = beta·C + A (rows × k, row stride lda) · op(W), W row-major:
// op(W) = Wᵀ for W (n × k) when `transposed`, else W for W (k × n).
inline void gemm(int64_t rows, int64_t n, int64_t k, const float* a, int64_t lda, const float* w, bool transposed,
                 float beta, float* c, int64_t ldc) {
  if (direct_blas()) {  // column-major view: Cᵀ = op(W)ᵀ · Aᵀ
    const int m_ = n, n_ = rows, k_ = k, lda_ = transposed ? k : n, ldb_ = lda, ldc_ = ldc;
    const float one = 1.0f;
    sgemm_(transposed ? "T" : "N", "N", &m_, &n_, &k_, &one, w, &lda_, a, &ldb_, &beta, c, &ldc_);
    return;
  }
  auto A = at::from_blob(const_cast<float*>(a), {rows, k}, {lda, 1}, at::kFloat);
  auto W = transposed ? at::from_blob(const_cast<float*>(w), {n, k}, at::kFloat).t()
                      : at::from_blob(const_cast<float*>(w), {k, n}, at::kFloat);
  auto C = at::from_blob(c, {rows, n}, {ldc, 1}, at::kFloat);
  if (beta == 0.0f) {
    at::mm_out(C, A, W);
  } else {
    C.addmm_(A, W);
  }
}

// C (n × m, row-major, dense) = beta·C + Aᵀ · X for A (rows × n, row stride lda) and X (rows × m, row
// stride ldx): one step's contribution to a weight gradient.
inline void gemm_tn(int64_t rows, int64_t n, int64_t m, const float* a, int64_t lda, const float* x, int64_t ldx,
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

inline bool packed_blas() {
  return direct_blas() && cblas_sgemm_pack_get_size != nullptr && cblas_sgemm_pack != nullptr &&
         cblas_sgemm_compute != nullptr;
}

// Buffers for packed weights, kept between calls: glibc maps a block of this size (100–300 KB) afresh
// for every allocation, and page-faulting it in took longer than the packing itself. Taken and given
// back on the calling thread, before and after the blocks run.
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
// with W packed once for all steps when MKL's packed GEMM is there (faster than plain sgemm on a
// block's few rows), else plain sgemm. Constructed (its buffer taken) before the blocks run, packed
// by pack() inside the block's body, on the block's thread: blocks pack in parallel and bodies do
// not allocate.
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
    } else {
      gemm(rows, n_, k_, a, lda, w_, transposed_, beta, c, ldc);
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

}  // namespace fused
