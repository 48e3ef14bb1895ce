#!/usr/bin/env python3
"""Peer for the FP8 GEMM benchmark (scripts/gpu-check.sh): torch._scaled_mm with DeepSeek's block scaling
(1x128 activation scales, 128x128 weight scales; cuBLASLt underneath) at the model's shapes.
Median of CUDA-event timings after warm-up; weights rotated over copies larger than L2; M < 16 padded to 16."""
import sys

import torch

SHAPES = [("q_a+kv_a", 2112, 7168), ("q_b", 24576, 1536), ("kv_b", 32768, 512), ("o_proj", 7168, 16384),
          ("expert gate+up", 4096, 7168), ("expert down", 7168, 2048), ("lm_head", 129280, 7168)]
MS = [1, 8, 64, 128, 512, 4096]


def median_ms(fn, reps=20, warm=3):
    ts = []
    for i in range(warm + reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn(i)
        b.record()
        b.synchronize()
        if i >= warm:
            ts.append(a.elapsed_time(b))
    ts.sort()
    return ts[len(ts) // 2]


def main():
    dev = torch.device("cuda")
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}")
    print("| shape | N x K | M | torch._scaled_mm | TFLOP/s | weight GB/s |")
    print("|---|---|---|---|---|---|")
    for name, N, K in SHAPES:
        copies = max(1, (400 << 20) // (N * K) + 1)
        ws = [torch.randn(N, K, device=dev).clamp(-3, 3).to(torch.float8_e4m3fn) for _ in range(copies)]
        kb = K // 128
        sb = torch.rand((N + 127) // 128, kb, device=dev) * 1e-2 + 1e-3  # [N/128, K/128], K blocks fastest
        for M in MS:
            Ml = max(M, 16)
            if Ml * N * 2 > (6 << 30):
                continue
            x = torch.randn(Ml, K, device=dev).to(torch.float8_e4m3fn)
            sa = (torch.rand(Ml, kb, device=dev) + 0.5).t().contiguous().t()  # [M, K/128], tokens fastest

            def run(i):
                return torch._scaled_mm(x, ws[i % copies].t(), scale_a=sa, scale_b=sb.t(), out_dtype=torch.bfloat16)

            try:
                t = median_ms(run, 10 if M >= 512 else 20)
            except Exception as e:  # noqa: BLE001 - report and go on
                print(f"| {name} | {N}x{K} | {M} | error: {str(e).splitlines()[0][:120]} | | |")
                continue
            flop = 2.0 * M * N * K
            print(f"| {name} | {N}x{K} | {M}{' (16)' if Ml != M else ''} | {t * 1e3:.1f} us | {flop / t / 1e9:.1f} | "
                  f"{N * K / t / 1e6:.0f} |", flush=True)
        del ws
        torch.cuda.empty_cache()


if __name__ == "__main__":
    sys.exit(main())
