// The kernels' dropout: a mask that is a hash of (seed, position), so that no mask is stored.
#pragma once

#include <cmath>
#include <cstdint>

#include "common.h"

namespace fused {

// Dropout with a counter-based random stream: element i of a tensor is kept when a hash of
// (seed, i) lands at or above p of the 24-bit range, and kept values are scaled by 1/(1 − p).
// The same mask on the gradient is the backward pass, so no mask is stored. Why: torch's CPU
// bernoulli_ draws from one sequential generator; a hash of the position lets the loops using
// this vectorise.
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

}  // namespace fused
