// CudaBackend: the MoE experts. Three paths (docs/ARCHITECTURE.md, docs/PERF.md "MoE experts"):
//  - grouped (decode sizes, and every size in the exact GEMM mode): the routing stays on the device; a
//    fixed sequence of 4 launches per chunk of tokens (lists, gate+up+SwiGLU, down, combine), sized from
//    T, top_k and E alone, so a decode step can be captured in a CUDA graph. Each used expert's weights
//    are streamed once per step; fp32 activations, fp32-accurate like the CPU reference. FP8 and BF16
//    experts; F32 experts (no checkpoint ships them) take the per-expert path.
//  - grouped-fp8 (large batches in the fast mode, FP8 experts; cuda_moe_fp8.cpp): the same device-side
//    lists, FP8 activations rounded as linear() rounds them, wgmma FP8 GEMMs; 5 launches per chunk.
//  - per-expert (kept for A/B and for experts grouped-fp8 does not take): the routing is read back (a
//    stream sync), then per used expert a gather, three linear() calls and a scatter-add.
// All add each token's experts in ascending expert order, like the CPU backend: deterministic.
#include <algorithm>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/launch_timer.h"
#include "util/log.h"

namespace ds::backend::cuda {

namespace {
// Fast mode: above this many tokens the FP8 paths (FP8 activations, as linear() uses above 8 tokens) run
// the experts. Measured on an H200 at DeepSeek-V3.2's shapes (docs/PERF.md "Grouped FP8 MoE"): the grouped
// FP8 path is 1.57x faster than the grouped fp32 one at 32 tokens and 4.3x at 512.
constexpr int64_t kGroupedMaxTokensFast = 31;
// The grouped path runs in chunks of at most this many tokens: bounds its [T * top_k, H] fp32 workspace.
constexpr int64_t kGroupedChunkTokens = 1024;
// The same for the FP8 path, whose weights are re-read per chunk: a prefill chunk (8192 by default) in one
// piece; the fp32 [T * top_k, H] slot rows then take 1.9 GB at DeepSeek-V3.2's shapes.
constexpr int64_t kFp8ChunkTokens = 8192;

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// One expert's weights as the grouped kernels read them, if they have a table's format and shapes (gate,
// up [I, H]; down [H, I]; 16-byte aligned on the device) and, for FP8, its scale row pitches (a pitch still
// 0 is taken from this expert: the table's first). False: the grouped kernels cannot take them.
bool expert_ptrs(const ExpertWeights& e, WType wt, int64_t H, int64_t I, int* pitch_gate_up, int* pitch_down,
                 MoeExpertPtrs* out) {
  const DType dt = wt == WType::FP8 ? DType::F8_E4M3 : DType::BF16;
  const LinearWeight* ws[3] = {&e.gate, &e.up, &e.down};
  for (int m = 0; m < 3; ++m) {
    const LinearWeight& w = *ws[m];
    const int64_t rows = m < 2 ? I : H, cols = m < 2 ? H : I;
    if (!(w.defined() && w.w.device() == Device::CUDA && w.w.dtype() == dt && w.out_features == rows &&
          w.in_features == cols && aligned16(w.w.raw())))
      return false;
    out->w[m] = w.w.raw();
    if (dt != DType::F8_E4M3) continue;
    if (!(w.scale.defined() && w.scale.dtype() == DType::F32)) return false;
    const int pitch = int(w.scale.dim(1));
    int& want = m < 2 ? *pitch_gate_up : *pitch_down;
    if (want == 0) want = pitch;
    if (pitch != want) return false;
    out->scale[m] = w.scale.data<float>();
  }
  return true;
}
}  // namespace

int64_t CudaBackend::moe_grouped_max_tokens() const {
  return fast(kFastFp8Act) ? kGroupedMaxTokensFast : INT64_MAX;
}

namespace {
// The CUDA form of a layer's experts: the weights (they keep the device memory the table points into)
// and the grouped kernels' pointer table.
struct CudaExpertSet final : ExpertSet {
  CudaExpertSet(std::vector<ExpertWeights> experts, MoeExpertTable t) : ExpertSet(std::move(experts)), table(std::move(t)) {}
  MoeExpertTable table;
};
}  // namespace

std::shared_ptr<const ExpertSet> CudaBackend::prepare_experts(std::vector<ExpertWeights> experts) {
  DS_CHECK(!experts.empty(), "prepare_experts: a MoE layer without experts");
  MoeExpertTable tb = moe_table(experts);
  return std::make_shared<CudaExpertSet>(std::move(experts), std::move(tb));
}

// One synchronous upload of every expert's weight and scale pointers, at load.
MoeExpertTable CudaBackend::moe_table(const std::vector<ExpertWeights>& experts) {
  MoeExpertTable tb;
  tb.E = int64_t(experts.size());
  const ExpertWeights& e0 = experts[0];
  tb.H = e0.gate.in_features;
  tb.I = e0.gate.out_features;
  const DType dt = e0.gate.w.dtype();
  tb.wtype = dt == DType::F8_E4M3 ? WType::FP8 : WType::BF16;
  bool ok = (dt == DType::F8_E4M3 || dt == DType::BF16) && int64_t(experts.size()) <= kMoeMaxExperts &&
            tb.H % 16 == 0 && tb.I % 16 == 0 && tb.H > 0 && tb.I > 0;
  std::vector<MoeExpertPtrs> ptrs(experts.size());
  for (size_t e = 0; e < experts.size() && ok; ++e)
    ok = expert_ptrs(experts[e], tb.wtype, tb.H, tb.I, &tb.pitch_gate_up, &tb.pitch_down, &ptrs[e]);
  tb.grouped = ok;
  if (ok) {
    const size_t bytes = ptrs.size() * sizeof(MoeExpertPtrs);
    tb.dev = Tensor::from_storage(persistent_alloc(bytes), {int64_t(bytes)}, DType::U8);
    copy_to_device(tb.dev.raw(), ptrs.data(), bytes);
  } else {
    spdlog::debug("MoE layer with {} experts: the grouped path does not support these weights", experts.size());
  }
  return tb;
}

Tensor CudaBackend::moe_experts(const Tensor& x, const Tensor& ids, const Tensor& weights, const ExpertSet& set) {
  const auto* cs = dynamic_cast<const CudaExpertSet*>(&set);
  DS_CHECK(cs, "moe_experts: the expert set was not prepared by the CUDA backend (prepare_experts)");
  const std::vector<ExpertWeights>& experts = set.experts();
  const int64_t T = x.dim(0), H = x.row_size(), k = ids.dim(1);
  DS_CHECK(ids.dtype() == DType::I32 && weights.dtype() == DType::F32 && ids.dim(0) == T && weights.dim(0) == T &&
               weights.numel() == T * k,
           "moe_experts: ids {} / weights {} for {} tokens", ids.describe(), weights.describe(), T);
  DS_CHECK(x.device() == Device::CUDA && x.dtype() == DType::F32 && ids.device() == Device::CUDA &&
               weights.device() == Device::CUDA,
           "moe_experts: x {} / ids / weights must be CUDA tensors", x.describe());
  DS_CHECK(!experts.empty() && experts[0].gate.in_features == H, "moe_experts: {} experts for rows of {}",
           experts.size(), H);
  if (T == 0) return alloc({T, H}, DType::F32);
  const MoeExpertTable& tb = cs->table;
  const MoePath path = moe_path_for(x, k, tb);
  if (path == MoePath::GroupedFp8) {
    Tensor y = empty({T, H}, DType::F32);
    for (int64_t t0 = 0; t0 < T; t0 += kFp8ChunkTokens) {
      const int64_t t1 = std::min(T, t0 + kFp8ChunkTokens);
      moe_experts_fp8(x.rows(t0, t1), ids.rows(t0, t1), weights.rows(t0, t1), tb, y.data<float>() + t0 * H);
    }
    return y;
  }
  if (path == MoePath::Grouped && k <= kMoeMaxTopK) {
    if (tb.grouped && aligned16(x.raw())) {
      Tensor y = empty({T, H}, DType::F32);
      for (int64_t t0 = 0; t0 < T; t0 += kGroupedChunkTokens) {
        const int64_t t1 = std::min(T, t0 + kGroupedChunkTokens);
        moe_experts_grouped(x.rows(t0, t1), ids.rows(t0, t1), weights.rows(t0, t1), tb, y.data<float>() + t0 * H);
      }
      return y;
    }
  }
  return moe_experts_per_expert(x, ids, weights, experts);
}

MoePath CudaBackend::moe_path_for(const Tensor& x, int64_t k, const MoeExpertTable& tb) const {
  const int64_t T = x.dim(0);
  const bool fp8_ok = fast(kFastFp8Act) && k <= kMoeMaxTopK && moe_fp8_usable(tb) && aligned16(x.raw());
  MoePath path = moe_path_;
  if (path == MoePath::GroupedFp8 && !fp8_ok) path = MoePath::Auto;  // the exact mode keeps its fp32 paths
  if (path == MoePath::Auto)
    path = T <= moe_grouped_max_tokens() ? MoePath::Grouped
           : fp8_ok                      ? MoePath::GroupedFp8
           // Shapes the FP8 path does not take (the tiny test models): the grouped fp32 path, which a
           // recorded step can capture, before the per-expert one (its routing comes back to the host).
           : tb.grouped && aligned16(x.raw()) ? MoePath::Grouped
                                              : MoePath::PerExpert;
  return path;
}

Tensor CudaBackend::moe_ffn(const Tensor& x, const Tensor& ids, const Tensor& weights, const ExpertSet& set,
                            const ExpertWeights* shared) {
  const auto* cs = dynamic_cast<const CudaExpertSet*>(&set);
  const int64_t T = x.dim(0), k = ids.dim(1);
  // The shared expert joins the grouped launches when it is one more expert of the table's format and
  // shapes (FP8 scale pitches included) and the grouped path takes the batch (in chunks, as moe_experts:
  // a token's result does not depend on how many tokens run beside it, whichever form computes a layer).
  MoeExpertPtrs sp;
  int pitch_gate_up = cs ? cs->table.pitch_gate_up : 0, pitch_down = cs ? cs->table.pitch_down : 0;  // to match
  const bool fuse = opts_.moe_fuse_shared && shared && cs && T > 0 && k + 1 <= kMoeMaxTopK && cs->table.grouped &&
                    cs->table.E + 1 <= kMoeMaxExperts && x.device() == Device::CUDA && x.dtype() == DType::F32 &&
                    aligned16(x.raw()) && moe_path_for(x, k, cs->table) == MoePath::Grouped &&
                    expert_ptrs(*shared, cs->table.wtype, cs->table.H, cs->table.I, &pitch_gate_up, &pitch_down,
                                &sp);
  if (!fuse) return Backend::moe_ffn(x, ids, weights, set, shared);
  DS_CHECK(ids.dtype() == DType::I32 && weights.dtype() == DType::F32 && ids.dim(0) == T && weights.numel() == T * k &&
               ids.device() == Device::CUDA && weights.device() == Device::CUDA,
           "moe_ffn: ids {} / weights {} for {} tokens", ids.describe(), weights.describe(), T);
  Tensor y = empty({T, x.row_size()}, DType::F32);
  for (int64_t t0 = 0; t0 < T; t0 += kGroupedChunkTokens) {
    const int64_t t1 = std::min(T, t0 + kGroupedChunkTokens);
    moe_experts_grouped(x.rows(t0, t1), ids.rows(t0, t1), weights.rows(t0, t1), cs->table,
                        y.data<float>() + t0 * x.row_size(), &sp);
  }
  return y;
}

void CudaBackend::moe_experts_grouped(const Tensor& x, const Tensor& ids, const Tensor& weights,
                                      const MoeExpertTable& tb, float* y, const MoeExpertPtrs* shared) {
  const int T = int(x.dim(0)), k = int(ids.dim(1)), Er = int(tb.E), Pr = T * k;
  // With the shared expert: expert Er of the lists, T more pairs.
  const int E = shared ? Er + 1 : Er, P = shared ? Pr + T : Pr;
  const int max_tiles = moe_max_tiles(P, E);
  // Benchmarks (set_profile): each launch timed with events, one line logged.
  LaunchTimer timer(profile_, stream_, 5);
  timer.mark();
  Tensor lists = empty({int64_t(2) * P + 3 * int64_t(max_tiles) + 1}, DType::I32);
  MoeLists l;
  l.slot_token = lists.data<int32_t>();
  l.pair_slot = l.slot_token + P;
  l.tiles = l.pair_slot + P;
  l.n_tiles = l.tiles + 3 * size_t(max_tiles);
  launch_moe_build_lists(ids.data<int32_t>(), T, k, Er, l, stream_, shared != nullptr);
  check_launch("moe lists");
  timer.mark();
  MoeGemmArgs g;
  g.experts = static_cast<const MoeExpertPtrs*>(tb.dev.raw());
  if (shared) g.shared = *shared, g.shared_e = Er;
  g.wtype = tb.wtype;
  g.tiles = l.tiles;
  g.n_tiles = l.n_tiles;
  g.max_tiles = max_tiles;
  Tensor act = empty({int64_t(P), tb.I}, DType::F32);
  g.x = x.data<float>();
  g.x_row_of_slot = l.slot_token;
  g.K = int(tb.H);
  g.N = int(tb.I);
  g.scale_pitch = tb.pitch_gate_up;
  g.y = act.data<float>();
  g.f16_x = opts_.moe_f16_x && tb.wtype == WType::FP8 && fast(kFastTf32Gemv);
  g.down_rows = opts_.moe_down_rows;
  g.stream_weights = opts_.moe_stream_weights;
  launch_moe_grouped_gemm(g, true, stream_);
  check_launch("moe gate+up");
  timer.mark();
  Tensor out = empty({int64_t(P), tb.H}, DType::F32);
  g.x = act.data<float>();
  g.x_row_of_slot = nullptr;
  g.K = int(tb.I);
  g.N = int(tb.H);
  g.scale_pitch = tb.pitch_down;
  g.y = out.data<float>();
  launch_moe_grouped_gemm(g, false, stream_);
  check_launch("moe down");
  timer.mark();
  launch_moe_combine(out.data<float>(), int(tb.H), l.pair_slot, weights.data<float>(), T, k, y, num_sms_, stream_,
                     shared ? l.pair_slot + Pr : nullptr);
  check_launch("moe combine");
  timer.mark();
  if (timer.on()) {
    const std::vector<float> us = timer.intervals_us();
    spdlog::info("moe grouped T={} top-{} E={} (grid bound {} tiles): lists {:.1f} us, gate+up {:.1f} us, down {:.1f} "
                 "us, combine {:.1f} us", T, k, E, max_tiles, us[0], us[1], us[2], us[3]);
  }
  if (shared) last_moe_path_ = g.f16_x ? "grouped-f16 + shared" : "grouped + shared";
  else last_moe_path_ = g.f16_x ? "grouped-f16" : "grouped";
}

Tensor CudaBackend::moe_experts_per_expert(const Tensor& x, const Tensor& ids, const Tensor& weights,
                                           const std::vector<ExpertWeights>& experts) {
  const int64_t T = x.dim(0), H = x.row_size(), k = ids.dim(1);
  Tensor y = alloc({T, H}, DType::F32);
  // The routing decides the shapes of the expert GEMMs: read it back (one small copy per MoE layer).
  Tensor hid = to_host(ids), hw = to_host(weights);
  std::vector<std::vector<std::pair<int32_t, float>>> routed(experts.size());
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < k; ++j) {
      const int32_t e = hid.data<int32_t>()[t * k + j];
      if (e == -1) continue;  // another rank's expert (moe_local_ids)
      DS_CHECK(e >= 0 && size_t(e) < experts.size(), "expert id {} out of range", e);
      routed[e].push_back({int32_t(t), hw.data<float>()[t * k + j]});
    }
  std::vector<int32_t> tok;
  std::vector<float> wgt;
  std::vector<int64_t> off{0};
  for (const auto& r : routed) {
    for (const auto& [t, w] : r) tok.push_back(t), wgt.push_back(w);
    off.push_back(int64_t(tok.size()));
  }
  const int32_t* dtok = upload_i32(tok);
  const float* dw = upload_f32(wgt);
  for (size_t e = 0; e < experts.size(); ++e) {
    const int64_t n = off[e + 1] - off[e];
    if (n == 0) continue;
    Tensor xe = empty({n, H}, DType::F32);
    launch_gather_rows(x.data<float>(), int(H), dtok + off[e], int(n), xe.data<float>(), stream_);
    check_launch("moe gather");
    Tensor act = silu_mul(linear(xe, experts[e].gate), linear(xe, experts[e].up));
    Tensor out = linear(act, experts[e].down);
    launch_scatter_add_rows(y.data<float>(), int(H), dtok + off[e], dw + off[e], out.data<float>(), int(n), stream_);
    check_launch("moe scatter");
  }
  last_moe_path_ = "per-expert";
  return y;
}

void CudaBackend::moe_local_ids(Tensor& ids, int32_t first, int32_t count) {
  DS_CHECK(ids.device() == Device::CUDA && ids.dtype() == DType::I32, "moe_local_ids: ids {}", ids.describe());
  launch_moe_local_ids(ids.data<int32_t>(), ids.numel(), first, count, stream_);
  check_launch("moe local ids");
}

}  // namespace ds::backend::cuda
