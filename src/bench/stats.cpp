#include "bench/stats.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace ds::bench {

namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// numpy's _lerp: exact at both ends, symmetric rounding around t = 0.5.
double lerp(double a, double b, double t) {
  double d = b - a;
  return t >= 0.5 ? b - d * (1 - t) : a + d * t;
}
}  // namespace

double np_mean(const std::vector<double>& v) {
  if (v.empty()) return kNaN;
  double s = 0;
  for (double x : v) s += x;
  return s / double(v.size());
}

double np_median(std::vector<double> v) {
  if (v.empty()) return kNaN;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;  // numpy: mean of the two middle values
}

double np_std(const std::vector<double>& v) {
  if (v.empty()) return kNaN;
  double m = np_mean(v), s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / double(v.size()));
}

double np_percentile(std::vector<double> v, double q) {
  if (v.empty()) return kNaN;
  std::sort(v.begin(), v.end());
  double pos = q / 100.0 * double(v.size() - 1);
  size_t lo = static_cast<size_t>(std::floor(pos));
  size_t hi = std::min(lo + 1, v.size() - 1);
  return lerp(v[lo], v[hi], pos - double(lo));
}

double np_max(const std::vector<double>& v) {
  if (v.empty()) return kNaN;
  return *std::max_element(v.begin(), v.end());
}

}  // namespace ds::bench
