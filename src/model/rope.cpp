#include "model/rope.h"

#include <algorithm>
#include <cmath>

namespace ds::model {

namespace {
// The dimension index at which a frequency completes `rotations` turns over the original context.
double correction_dim(double rotations, double dim, double base, double max_pos) {
  return dim * std::log(max_pos / (rotations * 2 * M_PI)) / (2 * std::log(base));
}
}  // namespace

backend::RopeTable make_rope_table(const ModelConfig& c) {
  const int64_t dim = c.qk_rope_head_dim, half = dim / 2;
  const float base = float(c.rope.theta);
  backend::RopeTable table;
  table.inv_freq.resize(size_t(half));
  std::vector<float> pos_freq(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) pos_freq[i] = std::pow(base, float(2 * i) / float(dim));
  if (!c.rope.is_yarn()) {
    for (int64_t i = 0; i < half; ++i) table.inv_freq[i] = 1.0f / pos_freq[i];
    return table;
  }
  const float factor = float(c.rope.factor);
  const double orig = double(c.rope.original_max_position_embeddings);
  double low = std::floor(correction_dim(c.rope.beta_fast, double(dim), c.rope.theta, orig));
  double high = std::ceil(correction_dim(c.rope.beta_slow, double(dim), c.rope.theta, orig));
  low = std::max(low, 0.0);
  high = std::min(high, double(dim - 1));
  if (low == high) high += 0.001;  // avoid a zero-width ramp
  const float span = float(high - low);
  for (int64_t i = 0; i < half; ++i) {
    float ramp = std::clamp((float(i) - float(low)) / span, 0.0f, 1.0f);
    float extrapolation_weight = 1.0f - ramp;
    float extrapolated = 1.0f / pos_freq[i];
    float interpolated = 1.0f / (factor * pos_freq[i]);
    table.inv_freq[i] = interpolated * (1.0f - extrapolation_weight) + extrapolated * extrapolation_weight;
  }
  table.attention_factor = float(c.rope_attention_factor());
  return table;
}

}  // namespace ds::model
