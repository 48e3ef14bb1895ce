// The HBM bandwidth ceiling every benchmark divides by (`bench model`, gpu_bench): the better of a
// device-to-device cudaMemcpy (bytes read + written) and a read-only streaming kernel, both over the same
// >= 4 GiB buffer, measured in the calling process. A copy alone reads low on the H200 (its writes turn
// the bus around: 3.2 TB/s against 4.2+ for reads), and decode kernels mostly read, so the copy alone made
// every "x roofline" look kinder than it was.
#pragma once
#include <cstdint>
#include <string>

namespace ds::backend::cuda {

struct HbmCeiling {
  double copy_gbs = 0;  // cudaMemcpy D2D of half the buffer onto the other half, read + write bytes
  double read_gbs = 0;  // a read-only kernel over the whole buffer
  int64_t bytes = 0;    // the buffer (less than asked when the device had too little free memory)
  double best_gbs() const { return copy_gbs > read_gbs ? copy_gbs : read_gbs; }
  std::string describe() const;  // one line for a benchmark's header
};

// On the current device; allocates `bytes` (halved down to 256 MiB when that much is not free) and
// frees it before returning. Medians of 10 timed runs of each after warm-up, CUDA events on a stream of
// its own; the buffer holds a non-zero pattern.
HbmCeiling measure_hbm_ceiling(int64_t bytes = int64_t(4) << 30);

}  // namespace ds::backend::cuda
