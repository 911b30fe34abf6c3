// How the kernels use threads: a batch's rows cut into row blocks, one thread each, run by a pool
// of threads kept between calls; and how many threads a batch or a memory-bound pass gets.
//
// The rows of a batch are independent through the whole time loop, so with torch
// using P threads the batch is cut into P row blocks and each block runs its own time loop
// on its own thread, start to end, with single-threaded BLAS calls. Splitting each step's
// (64 × 128)·(128 × 384) matmul across cores instead makes the threads meet twice per step,
// and with OpenMP's passive waits every meeting wakes a sleeping core, which costs more than
// the matmul itself. This needs a BLAS that can be told to
// stay on one thread from the calling thread: MKL, which PyTorch's x86 builds carry and
// export. Elsewhere (no MKL symbols) the loop runs on the calling thread with torch's matmul.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <system_error>
#include <thread>

#if defined(__SSE__)
#include <xmmintrin.h>
#endif

#include <ATen/Parallel.h>

#include "blas.h"

namespace fused {

constexpr int64_t kMinRowsPerThread = 8;  // below this a block's matmul is too small to be worth a thread
constexpr int64_t kMinElementsPerThread = 1 << 16;  // a pass over fewer is not worth waking a core

#if defined(__SSE__)
inline unsigned int float_control_word() { return _mm_getcsr(); }
inline void set_float_control_word(unsigned int word) { _mm_setcsr(word); }
#else
inline unsigned int float_control_word() { return 0; }
inline void set_float_control_word(unsigned int) {}
#endif

inline std::atomic<int64_t> block_threads{0};  // set_threads(): 0 = torch's thread count

// How many row blocks (threads) a batch of this size is cut into.
inline int64_t row_blocks(int64_t batch) {
  if (!direct_blas()) return 1;
  const int64_t threads = block_threads.load() > 0 ? block_threads.load() : at::get_num_threads();
  return std::max<int64_t>(1, std::min<int64_t>(threads, batch / kMinRowsPerThread));
}

// Blocks (threads) for a memory-bound pass over n elements.
inline int64_t pass_blocks(int64_t n) {
  const int64_t threads = block_threads.load() > 0 ? block_threads.load() : at::get_num_threads();
  return std::max<int64_t>(1, std::min<int64_t>(threads, n / kMinElementsPerThread));
}

// How many threads the kernels use at most (0: torch's thread count, the default).
inline void set_threads(int64_t threads) { block_threads.store(std::max<int64_t>(0, threads)); }

// How many threads the kernels split a batch of this size over (1: the portable path).
inline int64_t threads_for_batch(int64_t batch) { return row_blocks(batch); }

// Threads that stay alive between kernel calls: a new thread per call would pay its creation,
// waking an idle core and MKL's per-thread set-up every time.
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

}  // namespace fused
