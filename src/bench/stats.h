// numpy-compatible summary statistics (mean, median, population std, linear-interpolated percentile),
// so that reported numbers match sglang's np.mean/np.median/np.std/np.percentile.
#pragma once
#include <vector>

namespace ds::bench {

double np_mean(const std::vector<double>& v);            // NaN when empty, like numpy
double np_median(std::vector<double> v);                 // NaN when empty
double np_std(const std::vector<double>& v);             // population std (ddof=0)
double np_percentile(std::vector<double> v, double q);   // q in [0, 100], method "linear"
double np_max(const std::vector<double>& v);

}  // namespace ds::bench
