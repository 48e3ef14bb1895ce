// Random weights generated straight into the backend's memory, tensor by tensor: benchmarks of
// full-width models too large for a checkpoint on the benchmark machine's disk or its time budget.
// Same tensors, shapes and dtypes as make-model's checkpoints (FP8 e4m3 + 128x128 block scales where
// DeepSeek ships FP8, BF16 elsewhere) and the same value distributions (unit-RMS outputs), but a faster
// generator, so not the same values.
#pragma once
#include <cstdint>

#include "backend/backend.h"
#include "model/config.h"
#include "model/weights.h"

namespace ds::model {

// Main layers, and the MTP layers with `with_mtp`. Deterministic in (config, seed); OpenMP-parallel; a
// progress line (rank 0's). With tp: rank tp.rank's part only, the same values as one rank's model cut
// (each rank generates only its part of a tensor, except FP8 parts whose edges fall inside a 128 x 128
// scale block: those ranks generate the whole tensor and cut it).
ModelWeights random_weights(const ModelConfig& c, backend::Backend& be, uint64_t seed, const TensorParallel& tp = {},
                            bool with_mtp = false);

}  // namespace ds::model
