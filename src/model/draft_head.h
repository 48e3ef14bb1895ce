// The draft's copy of the LM head (speculative decoding): DeepSeek-V3.2 ships the head in BF16
// (129,280 x 7,168 = 1.85 GB), and every chained MTP pass reads all of it to pick one draft token: at
// full width ~70% of an MTP pass's bytes. Drafts never decide an output token (the target's verify step
// does), so the draft may read an FP8 copy, block-scaled as DeepSeek's other weights (e4m3, one fp32
// scale per 128 x 128 block, scale = block amax / 448): half the bytes. Acceptance may move slightly;
// outputs cannot.
#pragma once
#include <cstdint>
#include <vector>

#include "backend/backend.h"

namespace ds::model {

constexpr int kDraftCandidates = 8;

// Block-scaled e4m3 codes of a row-major [rows, cols] matrix: codes [rows, cols], scales [ceil(rows / 128),
// ceil(cols / 128)] (w ~= code x scale); partial blocks at the edges; an all-zero block gets scale 1.
struct Fp8Blocks {
  std::vector<uint8_t> codes;
  std::vector<float> scales;
  int64_t block_rows = 0, block_cols = 0;
};
Fp8Blocks quantize_fp8_blocks(const float* w, int64_t rows, int64_t cols);

// An FP8 copy of `head` in the backend's format (through its load_linear, as a checkpoint's FP8 weight
// would come); the head itself when it is FP8 already.
backend::LinearWeight fp8_draft_head(backend::Backend& be, const backend::LinearWeight& head);

}  // namespace ds::model
