// CudaBackend: the attention block's fused per-token ops (Backend::mla_kv_write, indexer_key_write,
// mla_absorb_q_rope) as one kernel each (k_kv_fused.cu), and mla_absorb_q_rope's bf16 form. Where
// options().fused_kv is off (DSSERVE_FUSED_KV=0) or a shape is one the kernels do not take, the Backend
// defaults run the separate kernels instead; both ways give the same pool rows bit for bit
// (tests/gpu/gpu_ops_check).
#include <algorithm>
#include <cstdint>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/gemm_batched.h"

namespace ds::backend::cuda {

namespace {
bool on_gpu_f32(const Tensor& t) { return t.defined() && t.device() == Device::CUDA && t.dtype() == DType::F32; }
bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

// The pool a fused op stores into, if its kernels take it: F32 / BF16 rows of at least `width` elements, or
// packed FP8 rows of the layout (quant_dim, bf16_dim) that the op produces.
bool kv_dst(Tensor& pool, const KvFp8Layout* fp8, int64_t width, int64_t quant_dim, int64_t bf16_dim, KvDst& d) {
  if (!pool.defined() || pool.device() != Device::CUDA || pool.ndim() != 2) return false;
  d.pool = pool.raw();
  if (fp8) {
    if (pool.dtype() != DType::U8 || pool.dim(1) != fp8->bytes() || fp8->quant_dim != quant_dim ||
        fp8->bf16_dim != bf16_dim || fp8->quant_dim % 4 || fp8->tile % 4 || fp8->bf16_dim % 4)
      return false;
    d.kind = KvPoolKind::FP8;
    d.fp8 = kv_fp8_dev(*fp8);
    return true;
  }
  if ((pool.dtype() != DType::F32 && pool.dtype() != DType::BF16) || pool.row_size() < width) return false;
  d.kind = pool.dtype() == DType::BF16 ? KvPoolKind::BF16 : KvPoolKind::F32;
  d.D = int(pool.row_size());
  return true;
}

RopeFreqs freqs(const RopeTable& t) {
  RopeFreqs f{};
  std::copy(t.inv_freq.begin(), t.inv_freq.end(), f.inv_freq);
  return f;
}
}  // namespace

void CudaBackend::mla_kv_write(const Tensor& kv, int64_t Dl, const Tensor& norm_w, float eps,
                               const std::vector<int32_t>& pos, const RopeTable& rope, Tensor& pool,
                               const KvFp8Layout* fp8, const std::vector<int32_t>& slots) {
  const int64_t T = kv.defined() ? kv.dim(0) : 0, Dr = kv.defined() ? kv.row_size() - Dl : 0;
  KvDst d;
  // What the kernel reproduces exactly: the vectorised RMSNorm (Dl % 4 == 0, 16-byte aligned rows and weight),
  // a rope table of Dr / 2 frequencies, pools of the widths above.
  const bool fused = opts_.fused_kv && on_gpu_f32(kv) && on_gpu_f32(norm_w) && Dl > 0 && Dl % 4 == 0 &&
                     Dl <= kFusedMaxLatent && norm_w.numel() == Dl && Dr >= 0 && Dr % 2 == 0 && (Dl + Dr) % 4 == 0 &&
                     Dr / 2 <= kMaxRopeHalf && int64_t(rope.inv_freq.size()) == Dr / 2 && aligned16(kv.raw()) &&
                     aligned16(norm_w.raw()) && int64_t(pos.size()) == T && int64_t(slots.size()) == T &&
                     kv_dst(pool, fp8, Dl + Dr, Dl, Dr, d);
  if (!fused) {
    last_kv_write_path_ = "composed";
    return Backend::mla_kv_write(kv, Dl, norm_w, eps, pos, rope, pool, fp8, slots);
  }
  for (int32_t s : slots)  // -1: a padding row, written nowhere
    DS_CHECK(s >= -1 && s < pool.dim(0), "cache slot {} outside the pool of {}", s, pool.dim(0));
  last_kv_write_path_ = "fused";
  if (T == 0) return;
  d.slots = upload_i32(slots);
  launch_mla_kv_write(kv.data<float>(), int(T), int(Dl), int(Dr), norm_w.data<float>(), eps, upload_i32(pos),
                      freqs(rope), rope.attention_factor, d, stream_);
  check_launch("mla_kv_write");
}

void CudaBackend::indexer_key_write(const Tensor& k, const Tensor& ln_w, const Tensor& ln_b, float eps,
                                    int64_t rot_dim, const std::vector<int32_t>& pos, const RopeTable& rope,
                                    bool hadamard_fp8, Tensor& pool, const KvFp8Layout* fp8,
                                    const std::vector<int32_t>& slots) {
  const int64_t T = k.defined() ? k.dim(0) : 0, Di = k.defined() ? k.row_size() : 0;
  KvDst d;
  const bool fused = opts_.fused_kv && on_gpu_f32(k) && on_gpu_f32(ln_w) && on_gpu_f32(ln_b) && Di > 0 &&
                     Di <= kFusedMaxIndexDim && ln_w.numel() == Di && ln_b.numel() == Di && rot_dim >= 0 &&
                     rot_dim % 2 == 0 && rot_dim <= Di && rot_dim / 2 <= kMaxRopeHalf &&
                     int64_t(rope.inv_freq.size()) == rot_dim / 2 && (!hadamard_fp8 || (Di & (Di - 1)) == 0) &&
                     int64_t(pos.size()) == T && int64_t(slots.size()) == T && kv_dst(pool, fp8, Di, Di, 0, d);
  if (!fused) {
    last_kv_write_path_ = "composed";
    return Backend::indexer_key_write(k, ln_w, ln_b, eps, rot_dim, pos, rope, hadamard_fp8, pool, fp8, slots);
  }
  for (int32_t s : slots) DS_CHECK(s >= -1 && s < pool.dim(0), "cache slot {} outside the pool of {}", s, pool.dim(0));
  last_kv_write_path_ = "fused";
  if (T == 0) return;
  d.slots = upload_i32(slots);
  launch_indexer_key_write(k.data<float>(), int(T), int(Di), ln_w.data<float>(), ln_b.data<float>(), eps, int(rot_dim),
                           upload_i32(pos), freqs(rope), rope.attention_factor, hadamard_fp8, d, stream_);
  check_launch("indexer_key_write");
}

Tensor CudaBackend::mla_absorb_q_rope(const Tensor& q, const LinearWeight& kv_b, int64_t heads, int64_t nope_dim,
                                      int64_t v_dim, const std::vector<int32_t>& pos, const RopeTable& rope) {
  const bool shaped = heads > 0 && q.defined() && q.row_size() % heads == 0;
  const int64_t T = q.defined() ? q.dim(0) : 0, qd = shaped ? q.row_size() / heads : 0, Dr = qd - nope_dim;
  const bool fused = opts_.fused_kv && shaped && on_gpu_f32(q) && nope_dim >= 0 && Dr > 0 && Dr % 2 == 0 &&
                     Dr / 2 <= kMaxRopeHalf && int64_t(rope.inv_freq.size()) == Dr / 2 && int64_t(pos.size()) == T;
  if (!fused) {
    last_kv_write_path_ = "composed";
    return Backend::mla_absorb_q_rope(q, kv_b, heads, nope_dim, v_dim, pos, rope);
  }
  last_kv_write_path_ = "fused";
  if (bf16_absorb(T) && nope_dim % 8 == 0 && qd % 4 == 0)
    return absorb_q_rope_bf16(q, kv_b, heads, nope_dim, v_dim, pos, rope);
  // The absorption reads the nope columns only; the rope part goes to the result rotated, in place of the
  // rotation of q (rope kernel) and the plain copy (a memcpy node) of the composition.
  Tensor out = absorb_q_nope(q, kv_b, heads, nope_dim, v_dim);
  if (T == 0) return out;
  const int64_t Dl = kv_b.in_features;
  launch_rope_copy(q.data<float>(), int(T), int(heads), int(qd), int(nope_dim), int(Dr), out.data<float>(),
                   int(Dl + Dr), int(Dl), upload_i32(pos), freqs(rope), rope.attention_factor, stream_);
  check_launch("mla_absorb_q_rope");
  return out;
}

// q_abs [T, H, Dl + Dr] in bf16: the nope part (made bf16 by the split kernel, which also writes the rotated
// rope part) times W_UK[h] (kv_b rows h (Dn + Dv) + [0, Dn), bf16), one strided-batched GEMM over the heads.
Tensor CudaBackend::absorb_q_rope_bf16(const Tensor& q, const LinearWeight& kv_b, int64_t heads, int64_t nope_dim,
                                       int64_t v_dim, const std::vector<int32_t>& pos, const RopeTable& rope) {
  const int64_t T = q.dim(0), qd = q.row_size() / heads, Dr = qd - nope_dim, Dl = kv_b.in_features;
  DS_CHECK(kv_b.out_features == heads * (nope_dim + v_dim), "kv_b_proj has {} rows, expected {}", kv_b.out_features,
           heads * (nope_dim + v_dim));
  Tensor out = empty({T, heads, Dl + Dr}, DType::BF16);
  Tensor nope = empty({T, heads, nope_dim}, DType::BF16);
  launch_q_split_bf16(q.data<float>(), int(T), int(heads), int(qd), int(nope_dim), int(Dr), nope.data<uint16_t>(),
                      out.data<uint16_t>(), int(Dl + Dr), int(Dl), upload_i32(pos), freqs(rope), rope.attention_factor,
                      stream_);
  const Tensor wb = kv_b_bf16(kv_b);
  // Column-major per head: q_abs^T [Dl x T] = W_UK[h]^T-as-stored [Dl x Dn, lda Dl] . nope^T [Dn x T].
  batched_->bf16(false, int(Dl), int(T), int(nope_dim), wb.data<uint16_t>(), int(Dl), (nope_dim + v_dim) * Dl,
                 nope.data<uint16_t>(), int(heads * nope_dim), nope_dim, out.raw(), true, int(heads * (Dl + Dr)),
                 Dl + Dr, int(heads), stream_);
  last_absorb_path_ = "bf16-batched";
  check_launch("mla_absorb_q_rope (bf16)");
  return out;
}

}  // namespace ds::backend::cuda
