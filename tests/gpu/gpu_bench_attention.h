// gpu_bench's attention tables (gpu_bench_attention.cpp): sparse MLA, dense MHA prefill, indexer scores.
#pragma once
#include "gpu_bench_util.h"

namespace ds::gpubench {
// Sparse MLA (absorbed, top-k 2048, 128 heads): SIMT vs mma.sync vs wgmma kernel (gpu_bench mla).
void bench_mla(const Ceilings& c);
// Dense causal MHA prefill vs the absorbed tensor-core kernel over the same keys (gpu_bench mha).
void bench_mha(const Ceilings& c);
// Indexer scores: SIMT vs tensor-core kernel, fp32 and e4m3 values (gpu_bench indexer).
void bench_indexer(const Ceilings& c);
// Indexer scores on IndexerMode::Fp8 values: mma.sync vs FP8 wgmma kernel (gpu_bench indexer-wgmma).
void bench_indexer_wgmma(const Ceilings& c);
}  // namespace ds::gpubench
