// Shared helpers of the golden tests: fixture discovery, reference arrays, error measures.
#pragma once
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "model/model.h"
#include "util/npy.h"

namespace golden {

inline std::string fixture(const std::string& name) { return std::string(DS_SOURCE_DIR) + "/tests/golden/" + name; }

inline std::vector<std::vector<int32_t>> sequences(const std::string& dir) {
  std::ifstream f(dir + "/ref/tokens.json");
  auto j = nlohmann::json::parse(f);
  return j.at("sequences").get<std::vector<std::vector<int32_t>>>();
}

// max |ours - ref| / max |ref| over rows [row0, row0 + rows) of ref, ours given row by row.
struct ErrorMeter {
  double max_abs_err = 0, max_abs_ref = 0;
  void add(const float* ours, const float* ref, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
      double d = std::fabs(double(ours[i]) - double(ref[i]));
      max_abs_err = std::isnan(d) ? INFINITY : std::max(max_abs_err, d);
      max_abs_ref = std::max(max_abs_ref, std::fabs(double(ref[i])));
    }
  }
  double rel() const { return max_abs_ref > 0 ? max_abs_err / max_abs_ref : max_abs_err; }
};

// A page table of `pages` distinct pages drawn from a shuffled pool, so sequences interleave in memory.
inline std::vector<int32_t> scattered_pages(int32_t pages, int32_t pool_pages, uint32_t seed, std::vector<char>& used) {
  std::mt19937 rng(seed);
  std::vector<int32_t> out;
  while (int32_t(out.size()) < pages) {
    const int32_t p = int32_t(rng() % uint32_t(pool_pages));
    if (used[size_t(p)]) continue;
    used[size_t(p)] = 1;
    out.push_back(p);
  }
  return out;
}

}  // namespace golden
