// CudaBackend: the MoE experts' FP8 grouped path, for large batches in the fast mode (FP8 activations).
// All on the device, a fixed sequence of 5 launches sized from T, top_k and E (no routing read back):
//   lists      the routed pairs sorted by expert, each expert's rows padded to 64- or 128-row tiles
//              (k_moe_lists.cu; 128 for large chunks: k_moe_fp8_ws.cu's form, moe_fp8_tile_rows_for)
//   quant      x rounded to FP8 per token per 128 columns, as linear() rounds activations (k_quant.cu).
//              Once per token: the GEMM gathers the rounded rows, the same bytes linear() would make of
//              each expert's gathered rows, at 1/8 of the traffic of quantising T x top_k rows.
//   gate+up    wgmma FP8 GEMM over the tiles, SwiGLU, the result rounded to FP8 like an activation
//   down       wgmma FP8 GEMM, fp32 rows per (token, expert) slot
//   combine    each token's slots added in expert order (k_moe_lists.cu): deterministic, as the CPU backend
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/launch_timer.h"
#include "util/log.h"

namespace ds::backend::cuda {

// 128-row tiles share each weight tile between twice the rows (half the L2 traffic per multiply-add), but a
// short last tile per expert wastes more. gpu_bench moe on an H100 (docs/PERF.md, session 22), DeepSeek's
// experts, 128 vs 64 rows: 0.99x at 512 tokens (16 rows per expert on average), 1.04x at 2,048 (64), 1.23x at
// 4,096 (128), 1.41x at 8,192 (256). So 128 from 64 routed rows per expert on average.
int CudaBackend::moe_fp8_tile_rows_for(int64_t pairs, int64_t E) const {
  if (opts_.moe_fp8_tile_rows) return opts_.moe_fp8_tile_rows;
  return pairs >= int64_t(kMoeFp8TileRows) * E ? kMoeFp8WsTileRows : kMoeFp8TileRows;
}

bool CudaBackend::moe_fp8_usable(const MoeExpertTable& tb) {
  return tb.grouped && tb.wtype == WType::FP8 && moe_fp8_supported(int(tb.H), int(tb.I)) &&
         moe_fp8_supported(int(tb.I), int(tb.H));
}

void CudaBackend::moe_experts_fp8(const Tensor& x, const Tensor& ids, const Tensor& weights, const MoeExpertTable& tb,
                                  float* y) {
  const int T = int(x.dim(0)), k = int(ids.dim(1)), E = int(tb.E), P = T * k, H = int(tb.H), I = int(tb.I);
  const int R = moe_fp8_tile_rows_for(P, E);
  const auto gemm = R == kMoeFp8WsTileRows ? launch_moe_fp8_gemm_ws : launch_moe_fp8_gemm;
  const int max_tiles = moe_max_tiles(P, E, R);
  const int64_t rows = int64_t(max_tiles) * R;  // padded rows: a bound, the tiles in use take fewer
  LaunchTimer timer(profile_, stream_, 6);  // benchmarks (set_profile): each launch timed, one line logged
  timer.mark();
  Tensor lists = empty({int64_t(P) + rows + 4 * int64_t(max_tiles) + 1}, DType::I32);
  MoeLists l;
  l.pair_slot = lists.data<int32_t>();
  l.slot_token = l.pair_slot + P;
  l.tiles = l.slot_token + rows;
  l.tile_slot0 = l.tiles + 3 * size_t(max_tiles);
  l.n_tiles = l.tile_slot0 + max_tiles;
  l.tile_rows = R;
  launch_moe_build_lists(ids.data<int32_t>(), T, k, E, l, stream_);
  check_launch("moe lists (fp8)");
  timer.mark();
  Tensor xq = empty({int64_t(T), int64_t(H)}, DType::F8_E4M3), xs = empty({int64_t(H / 128), int64_t(T)}, DType::F32);
  launch_quant_fp8_act(x.data<float>(), T, T, H, xq.data<uint8_t>(), xs.data<float>(), T, true, nullptr, stream_);
  check_launch("moe quant_fp8_act");
  timer.mark();
  Tensor act_q = empty({rows, int64_t(I)}, DType::F8_E4M3), act_s = empty({int64_t(I / 128), rows}, DType::F32);
  MoeFp8GemmArgs g;
  g.experts = static_cast<const MoeExpertPtrs*>(tb.dev.raw());
  g.tiles = l.tiles;
  g.tile_slot0 = l.tile_slot0;
  g.n_tiles = l.n_tiles;
  g.max_tiles = max_tiles;
  g.a = xq.data<uint8_t>();
  g.a_scale = xs.data<float>();
  g.a_scale_pitch = T;
  g.row_token = l.slot_token;
  g.K = H;
  g.N = I;
  g.scale_pitch = tb.pitch_gate_up;
  g.act_q = act_q.data<uint8_t>();
  g.act_s = act_s.data<float>();
  g.act_s_pitch = int(rows);
  gemm(g, true, stream_);
  check_launch("moe gate+up (fp8)");
  timer.mark();
  Tensor out = empty({int64_t(P), int64_t(H)}, DType::F32);
  MoeFp8GemmArgs d = g;
  d.a = act_q.data<uint8_t>();
  d.a_scale = act_s.data<float>();
  d.a_scale_pitch = int(rows);
  d.row_token = nullptr;
  d.K = I;
  d.N = H;
  d.scale_pitch = tb.pitch_down;
  d.act_q = nullptr;
  d.act_s = nullptr;
  d.out = out.data<float>();
  gemm(d, false, stream_);
  check_launch("moe down (fp8)");
  timer.mark();
  launch_moe_combine(out.data<float>(), H, l.pair_slot, weights.data<float>(), T, k, y, num_sms_, stream_);
  check_launch("moe combine");
  timer.mark();
  if (timer.on()) {
    const std::vector<float> us = timer.intervals_us();
    spdlog::info("moe grouped-fp8 T={} top-{} E={} (grid bound {} tiles of {}): lists {:.1f} us, quant {:.1f} us, "
                 "gate+up {:.1f} us, down {:.1f} us, combine {:.1f} us", T, k, E, max_tiles, R, us[0], us[1], us[2],
                 us[3], us[4]);
  }
  last_moe_path_ = "grouped-fp8";
  last_moe_fp8_tile_rows_ = R;
}

}  // namespace ds::backend::cuda
