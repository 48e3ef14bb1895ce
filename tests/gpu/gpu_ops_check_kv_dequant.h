// gpu_ops_check_kv_dequant.cu: the fast FP8 KV dequantisation against the plain one.
#pragma once

namespace opcheck {
// Mismatching values (bitwise) over every code x the scales tried (their count in *n_scales).
long long kv_dequant_mismatches(int* n_scales);
}  // namespace opcheck
