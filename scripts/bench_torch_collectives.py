#!/usr/bin/env python3
"""The peer of gpu_dist_check's collective tables (issue 15): the same collectives on the same sizes through
torch.distributed's NCCL backend, timed the same way, in the same device call.

Usage: bench_torch_collectives.py [N_GPUS]   (default: every visible GPU; needs at least 2)
One process per GPU (torch.multiprocessing), [T, 7168] rows per rank for T in 1, 8, 32, 128, 1024:
all-reduce in fp32 and bf16, all-gather and reduce-scatter in bf16. Latency: median of 50 after 10 warm-up,
host-timed around torch.cuda.synchronize(), the slowest rank. Bus bandwidth as nccl-tests defines it
(all-reduce: 2 (n - 1) / n x bytes; all-gather / reduce-scatter: (n - 1) / n x the gathered bytes).
"""
import os
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

TOKENS = (1, 8, 32, 128, 1024)
HIDDEN = 7168
KINDS = (("all-reduce fp32", "all_reduce", torch.float32), ("all-reduce bf16", "all_reduce", torch.bfloat16),
         ("all-gather bf16", "all_gather", torch.bfloat16), ("reduce-scatter bf16", "reduce_scatter", torch.bfloat16))


def worker(rank, n, port, out):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", rank=rank, world_size=n, device_id=torch.device("cuda", rank))
    rows = []
    for name, op, dt in KINDS:
        for t in TOKENS:
            small = torch.zeros(t, HIDDEN, dtype=dt, device="cuda")
            big = torch.zeros(t * n, HIDDEN, dtype=dt, device="cuda")
            us = []
            for i in range(60):
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                if op == "all_reduce":
                    dist.all_reduce(small)
                elif op == "all_gather":
                    dist.all_gather_into_tensor(big, small)
                else:
                    dist.reduce_scatter_tensor(small, big)
                torch.cuda.synchronize()
                if i >= 10:
                    us.append((time.perf_counter() - t0) * 1e6)
            us.sort()
            rows.append((name, t, us[len(us) // 2], small.element_size()))
    out.put((rank, rows))
    dist.destroy_process_group()


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else torch.cuda.device_count()
    if n < 2 or n > torch.cuda.device_count():
        sys.exit(f"bench_torch_collectives: {n} GPUs asked, {torch.cuda.device_count()} visible; needs >= 2")
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    port = 29000 + os.getpid() % 1000
    procs = [ctx.Process(target=worker, args=(r, n, port, out)) for r in range(n)]
    for p in procs:
        p.start()
    results = dict(out.get(timeout=600) for _ in procs)
    for p in procs:
        p.join()
    print(f"torch.distributed {torch.__version__} (NCCL {'.'.join(map(str, torch.cuda.nccl.version()))}), "
          f"{n} GPUs, [T, {HIDDEN}] rows per rank: op, T, us, bus GB/s")
    for i, (name, t, _, esize) in enumerate(results[0]):
        worst = max(results[r][i][2] for r in range(n))
        row_bytes = t * HIDDEN * esize
        bus = 2.0 * (n - 1) / n * row_bytes if name.startswith("all-reduce") else (n - 1) / n * row_bytes * n
        print(f"  {name:<20} {t:5d} {worst:9.1f} {bus / (worst * 1e-6) / 1e9:9.1f}")


if __name__ == "__main__":
    main()
