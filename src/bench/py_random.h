// Python's random.Random (MT19937, seeding and sample()), so that GPQA picks the same examples and
// the same answer orders as sglang's simple_eval_gpqa for the same seed.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace ds::bench {

class PyRandom {
 public:
  explicit PyRandom(uint32_t seed);  // random.Random(seed) for 0 <= seed < 2**32
  uint32_t genrand_uint32();
  uint32_t getrandbits(int k);       // 1 <= k <= 32
  uint64_t randbelow(uint64_t n);    // _randbelow_with_getrandbits, n < 2**32
  // random.sample(range(n), k): the chosen indices in order.
  std::vector<size_t> sample(size_t n, size_t k);

 private:
  uint32_t mt_[624];
  int index_ = 625;
};

}  // namespace ds::bench
