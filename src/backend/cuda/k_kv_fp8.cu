// Packed FP8 KV pools (backend/kv_fp8.h): the fused quantising cache write (one block per token: a
// tile's amax, its scale, the e4m3 codes, then the bf16 channels) and the dequantising row gather (the
// expanded attention form's check path).
#include "backend/cuda/kv_fp8.cuh"
#include "backend/cuda/pdl.cuh"

namespace ds::backend::cuda {

namespace {
constexpr int NT = 128;

__global__ void __launch_bounds__(NT) cache_write_fp8_kernel(uint8_t* pool, KvFp8Dev L, const float* quant,
                                                             const float* rest, const int32_t* slots) {
  pdl_prologue();
  __shared__ float red[NT / 32];
  const int t = blockIdx.x, tid = threadIdx.x;
  const int slot = slots[t];
  if (slot < 0) return;  // a padding row of a captured step (uniform over the block)
  uint8_t* row = pool + size_t(slot) * L.bytes;
  const float* x = quant + size_t(t) * L.quant_dim;
  for (int c0 = 0; c0 < L.quant_dim; c0 += L.tile) {
    const int n = min(L.tile, L.quant_dim - c0);
    float amax = 0.f;
    for (int c = tid; c < n; c += NT) amax = fmaxf(amax, fabsf(x[c0 + c]));
    for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    __syncthreads();  // red is free (the previous tile's readers are done)
    if (tid % 32 == 0) red[tid / 32] = amax;
    __syncthreads();
    amax = fmaxf(fmaxf(red[0], red[1]), fmaxf(red[2], red[3]));
    const float s = kv_scale(amax, L.pow2);
    for (int c = tid; c < n; c += NT) row[c0 + c] = s > 0.f ? kv_to_e4m3(x[c0 + c] / s) : uint8_t(0);
    if (tid == 0) *reinterpret_cast<float*>(row + L.quant_dim + 4 * (c0 / L.tile)) = s;
  }
  const int off = kv_bf16_off(L);
  for (int c = tid; c < L.bf16_dim; c += NT) {
    const __nv_bfloat16 h = __float2bfloat16_rn(rest[size_t(t) * L.bf16_dim + c]);
    *reinterpret_cast<__nv_bfloat16*>(row + off + 2 * c) = h;
  }
}

__global__ void gather_fp8_kernel(const uint8_t* pool, KvFp8Dev L, const int32_t* idx, float* out) {
  pdl_prologue();
  const int r = blockIdx.x, W = L.quant_dim + L.bf16_dim;
  const uint8_t* row = pool + size_t(idx[r]) * L.bytes;
  for (int c = 4 * threadIdx.x; c < W; c += 4 * blockDim.x)
    *reinterpret_cast<float4*>(out + size_t(r) * W + c) = kv_load4(row, L, c);
}
}  // namespace

void launch_cache_write_fp8(uint8_t* pool, const KvFp8Dev& L, const float* quant, const float* rest,
                            const int32_t* slots, int T, cudaStream_t st) {
  if (T) launch_k(cache_write_fp8_kernel, T, NT, 0, st, pool, L, quant, rest, slots);
}

void launch_gather_fp8(const uint8_t* pool, const KvFp8Dev& L, const int32_t* idx, int n, float* out,
                       cudaStream_t st) {
  if (n) launch_k(gather_fp8_kernel, n, 128, 0, st, pool, L, idx, out);
}

}  // namespace ds::backend::cuda
