// The grouped expert GEMMs of the MoE layer: one launch for gate + up + SwiGLU over every used expert,
// one for down. At decode sizes this is weight streaming (each used expert's weights read once per
// step, not once per token), so it reuses the small-M GEMV's scheme (k_gemv.cu): a block owns 16 weight
// rows of one expert and a tile of up to 8 * NT slots (tokens) of that expert; its 8 warps split K; lane
// (g = lane / 4, t = lane % 4) loads 16 contiguous weights of rows g and g + 8 per 64-column step, and
// 16 activations of slot 8j + g; mma.m16n8k8 in TF32 on exact weights with each activation split into
// two TF32 parts: fp32-accurate, like the CPU reference. The FP8 block scale multiplies each step.
//
// Grid: x = tile (a host-known bound, moe_max_tiles), y = 16-row block. Blocks past the tiles in use
// exit at once, so the launch does not depend on the routing. The gated kernel reads the gate and up rows
// of the same outputs and applies SwiGLU in its epilogue: the [P, I] intermediate is written once.
#include "backend/cuda/kernels.h"
#include "backend/cuda/tf32_mma.cuh"

namespace ds::backend::cuda {

namespace {
constexpr int kWarps = 8;

template <int WT, int NT, bool GATED>
__global__ void __launch_bounds__(kWarps * 32) moe_gemm_kernel(MoeGemmArgs a) {
  constexpr int NM = GATED ? 2 : 1;   // weight matrices per block
  constexpr int U = GATED ? 1 : 2;    // steps loaded ahead: 64 bytes of FP8 weights in flight per lane
  constexpr int EB = WT == int(WType::FP8) ? 1 : 2;
  constexpr int MT = 8 * NT, PITCH = MT + 1;  // +1: the epilogue reads part[.][r][m] across r
  __shared__ float part[NM][kWarps][16][PITCH];
  const int tile = blockIdx.x;
  if (tile >= *a.n_tiles) return;
  const int e = a.tiles[3 * tile], slot0 = a.tiles[3 * tile + 1], rows = a.tiles[3 * tile + 2];
  const int K = a.K, N = a.N;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
  const int n0 = blockIdx.y * 16, r0 = n0 + g, r1 = n0 + g + 8;
  const bool ok0 = r0 < N, ok1 = r1 < N;
  const int nsteps = (K + 63) / 64;
  const MoeExpertPtrs& ex = a.experts[e];
  const uint8_t* w0[NM];
  const uint8_t* w1[NM];
  const float* srow[NM];
#pragma unroll
  for (int mi = 0; mi < NM; ++mi) {
    const int mat = GATED ? mi : 2;
    const uint8_t* w = static_cast<const uint8_t*>(ex.w[mat]);
    w0[mi] = w + size_t(ok0 ? r0 : n0) * K * EB;
    w1[mi] = w + size_t(ok1 ? r1 : n0) * K * EB;
    srow[mi] = WT == int(WType::FP8) ? ex.scale[mat] + size_t(n0 / 128) * a.scale_pitch : nullptr;
  }
  // This lane's activation rows: slots 8j + g of the tile (null past its rows).
  const float* xr[NT];
#pragma unroll
  for (int j = 0; j < NT; ++j) {
    const int m = 8 * j + g;
    const int row = m < rows ? (a.x_row_of_slot ? a.x_row_of_slot[slot0 + m] : slot0 + m) : -1;
    xr[j] = row >= 0 ? a.x + size_t(row) * K : nullptr;
  }
  float acc[NM][NT][4];
#pragma unroll
  for (int mi = 0; mi < NM; ++mi)
#pragma unroll
    for (int j = 0; j < NT; ++j) acc[mi][j][0] = acc[mi][j][1] = acc[mi][j][2] = acc[mi][j][3] = 0.f;
  for (int s0 = warp; s0 < nsteps; s0 += U * kWarps) {
    Row16<WT> wa[NM][U], wb[NM][U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int st = s0 + u * kWarps, k = st * 64 + 16 * t;
      const bool kin = st < nsteps && k < K;
#pragma unroll
      for (int mi = 0; mi < NM; ++mi) {
        wa[mi][u].load(w0[mi], k, kin && ok0);
        wb[mi][u].load(w1[mi], k, kin && ok1);
      }
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int st = s0 + u * kWarps, k = st * 64 + 16 * t;
      if (st >= nsteps) break;
      const bool kin = k < K;
      float fa[NM][16], fb[NM][16], sc[NM];
#pragma unroll
      for (int mi = 0; mi < NM; ++mi) {
        wa[mi][u].decode(fa[mi]);
        wb[mi][u].decode(fb[mi]);
        sc[mi] = WT == int(WType::FP8) ? srow[mi][(st * 64) / 128] : 1.f;
      }
#pragma unroll
      for (int j = 0; j < NT; ++j) {
        if (8 * j >= rows) break;  // uniform over the block
        float xv[16];
        if (kin && xr[j]) {
          const float4* xp = reinterpret_cast<const float4*>(xr[j] + k);
#pragma unroll
          for (int q = 0; q < 4; ++q) {
            const float4 v = __ldg(xp + q);
            xv[4 * q] = v.x, xv[4 * q + 1] = v.y, xv[4 * q + 2] = v.z, xv[4 * q + 3] = v.w;
          }
        } else {
#pragma unroll
          for (int i = 0; i < 16; ++i) xv[i] = 0.f;
        }
        uint32_t hi[16], lo[16];
#pragma unroll
        for (int i = 0; i < 16; ++i) {
          hi[i] = to_tf32(xv[i]);
          lo[i] = to_tf32(xv[i] - __uint_as_float(hi[i]));
        }
#pragma unroll
        for (int mi = 0; mi < NM; ++mi) {
          float d[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
          for (int i = 0; i < 8; ++i) {
            const uint32_t a0 = __float_as_uint(fa[mi][2 * i]), a1 = __float_as_uint(fb[mi][2 * i]);
            const uint32_t a2 = __float_as_uint(fa[mi][2 * i + 1]), a3 = __float_as_uint(fb[mi][2 * i + 1]);
            mma_tf32(d, a0, a1, a2, a3, hi[2 * i], hi[2 * i + 1]);
            mma_tf32(d, a0, a1, a2, a3, lo[2 * i], lo[2 * i + 1]);
          }
#pragma unroll
          for (int q = 0; q < 4; ++q) acc[mi][j][q] = fmaf(sc[mi], d[q], acc[mi][j][q]);
        }
      }
    }
  }
  // acc[mi][j]: (row g, slots 8j + 2t, 8j + 2t + 1), (row g + 8, the same slots).
#pragma unroll
  for (int mi = 0; mi < NM; ++mi)
#pragma unroll
    for (int j = 0; j < NT; ++j) {
      part[mi][warp][g][8 * j + 2 * t] = acc[mi][j][0];
      part[mi][warp][g][8 * j + 2 * t + 1] = acc[mi][j][1];
      part[mi][warp][g + 8][8 * j + 2 * t] = acc[mi][j][2];
      part[mi][warp][g + 8][8 * j + 2 * t + 1] = acc[mi][j][3];
    }
  __syncthreads();
  // 16 consecutive outputs of a slot per 16 threads (64-byte segments); warps summed in a fixed order.
  for (int idx = threadIdx.x; idx < 16 * MT; idx += blockDim.x) {
    const int m = idx / 16, r = idx % 16, n = n0 + r;
    if (m >= rows || n >= N) continue;
    float s[NM];
#pragma unroll
    for (int mi = 0; mi < NM; ++mi) {
      s[mi] = 0.f;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) s[mi] += part[mi][w][r][m];
    }
    float v = s[0];
    if constexpr (GATED) v = s[0] / (1.0f + expf(-s[0])) * s[1];  // silu(gate) * up, as silu_mul
    a.y[size_t(slot0 + m) * N + n] = v;
  }
}

template <int WT, bool GATED>
void launch_typed(const MoeGemmArgs& a, cudaStream_t st) {
  const dim3 grid(unsigned(a.max_tiles), unsigned((a.N + 15) / 16));
  if (a.tile_rows <= 8) moe_gemm_kernel<WT, 1, GATED><<<grid, kWarps * 32, 0, st>>>(a);
  else if (a.tile_rows <= 16) moe_gemm_kernel<WT, 2, GATED><<<grid, kWarps * 32, 0, st>>>(a);
  else moe_gemm_kernel<WT, 4, GATED><<<grid, kWarps * 32, 0, st>>>(a);
}
}  // namespace

void launch_moe_grouped_gemm(const MoeGemmArgs& a, bool gated, cudaStream_t st) {
  if (a.max_tiles == 0 || a.N == 0) return;
  if (a.wtype == WType::FP8) gated ? launch_typed<int(WType::FP8), true>(a, st) : launch_typed<int(WType::FP8), false>(a, st);
  else gated ? launch_typed<int(WType::BF16), true>(a, st) : launch_typed<int(WType::BF16), false>(a, st);
}

}  // namespace ds::backend::cuda
