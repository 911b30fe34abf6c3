// A layer's batch cut into row blocks (one thread each), the memory each block works in, and the
// large tensors the layers reuse between calls.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <functional>
#include <mutex>
#include <vector>

#include <ATen/ops/empty.h>

#include "blas.h"
#include "threads.h"

namespace fused {

// The large tensors of a call (the output, the gate values saved for the backward pass, dx) come
// from buffers kept between calls and reused once nothing else refers to them (the pool holds the
// only reference). Why: a fresh tensor that size is memory that glibc maps afresh and the OS zeroes
// page by page on first touch, which costs more than filling it again. One list per kind of tensor,
// so that a buffer goes to the same role in the next batch; a request larger than every free buffer
// of its kind frees those.
// Batches of varying length therefore settle on buffers for the longest one seen, held until the
// process ends: about the memory that batch needs anyway (150 MB for two GRU layers at T = 400).
enum BufferKind { kStates, kGates, kGateAux, kTanhC, kDx, kInput, kKinds };

inline at::Tensor pooled_empty(BufferKind kind, at::IntArrayRef sizes, const at::TensorOptions& options) {
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

// The memory a row block's thread writes at every step (the step's gate pre-activations or their
// gradients, dh and dc, the weight- and bias-gradient sums) as one region per block, the regions
// 256 KB apart. Why: with the blocks' memory side by side (one (B, 3H) buffer cut by rows), two
// threads slowed each other down, likely the cores' prefetchers reaching into lines the other core
// is writing; the gaps avoid it. The gaps are never touched, so they cost address space, not memory.
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
        for (int64_t t = 0; t < std::min(lengths[row], steps); ++t) {
          running_[block * steps + t] = row - begin(block) + 1;
        }
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
    SingleThreadedBlas blas;  // woken for each of a step's 2-4 small matmuls, for less work than waking it costs)
    run(0);
    return;
  }
  WorkerPool::instance().run(blocks.count(), run);
}

// One StepGemm per row block.
inline std::vector<StepGemm> step_gemms(const RowBlocks& blocks, int64_t n, int64_t k, const float* w,
                                        bool transposed) {
  std::vector<StepGemm> gemms;
  gemms.reserve(blocks.count());
  for (int64_t block = 0; block < blocks.count(); ++block) {
    gemms.emplace_back(blocks.end(block) - blocks.begin(block), n, k, w, transposed);
  }
  return gemms;
}

// A gradient of shape `sizes` from the row blocks' partial sums kept in their regions at `offset`:
// block 0's, then the others' added in order; zeros when no block ran (an empty batch).
inline at::Tensor sum_blocks(const BlockRegions& regions, int64_t offset, int64_t blocks, bool ran,
                             at::IntArrayRef sizes, const at::TensorOptions& options) {
  auto out = at::empty(sizes, options);
  if (!ran) return out.zero_();
  const int64_t n = out.numel();
  float* o = out.data_ptr<float>();
  std::copy(regions(0) + offset, regions(0) + offset + n, o);
  for (int64_t block = 1; block < blocks; ++block) add_to(o, regions(block) + offset, n);
  return out;
}

}  // namespace fused
