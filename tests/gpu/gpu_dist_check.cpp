// The NCCL path on the GPU machine's one GPU (issue 14; the multi-GPU runs are issue 15): NcclGroup's
// collectives on device tensors; the tiny model through a one-rank NCCL group (every all-reduce and the
// LM head's all-gather run) against the same model without a group, op by op and replayed from CUDA
// graphs that hold the NCCL calls; expert parallelism's local ids and skipped experts against the CPU;
// two ranks of tensor parallelism and of DP attention on the one GPU through host-staged collectives.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <algorithm>
#include <chrono>
#include <future>

#include <fmt/format.h>

#include "backend/cuda/cuda_backend.h"
#include "check_util.h"
#include "gpu_dist_check_peer.h"
#include "dist/local_group.h"
#include "dist/nccl_group.h"
#include "model/model.h"
#include "runtime/step_recorder.h"
#include "tensor/dtype.h"

using namespace ds;
using namespace ds::model;
using namespace gpucheck;

namespace {
int failures = 0, checks = 0;
void expect(bool ok, const std::string& what) {
  ++checks;
  if (!ok) ++failures;
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

void collectives(backend::Backend& be, dist::Group& g) {
  Tensor h = randn({3, 1000});
  Tensor d = be.from_host(h);
  g.all_reduce_sum(d);
  expect(same_bits(be.to_host_f32(d), h), "NCCL all-reduce of one rank leaves the values");
  Tensor out = be.alloc({3, 1000}, DType::F32);
  g.all_gather(be.from_host(h), out);
  expect(same_bits(be.to_host_f32(out), h), "NCCL all-gather of one rank copies");
  Tensor b = be.from_host(h);
  g.broadcast(b, 0);
  expect(same_bits(be.to_host_f32(b), h), "NCCL broadcast from rank 0");
  Tensor rs = be.alloc({3, 1000}, DType::F32);
  g.reduce_scatter_sum(be.from_host(h), rs);
  expect(same_bits(be.to_host_f32(rs), h), "NCCL reduce-scatter of one rank keeps its chunk");
}

ForwardBatch prompt_batch(const ModelConfig& c, int n, int32_t page) {
  ForwardBatch fb;
  for (int s = 0; s < n; ++s) {
    SequenceChunk sc;
    for (int k = 0; k < 20 + 7 * s; ++k) sc.tokens.push_back(int32_t(rng()() % uint32_t(c.vocab_size)));
    for (int p = 0; p < 4; ++p) sc.page_table.push_back(s * 4 + p);
    (void)page;
    fb.seqs.push_back(sc);
  }
  return fb;
}

void model_through_nccl(backend::Backend& be, dist::Group& g) {
  const std::string dir = std::string(DS_SOURCE_DIR) + "/tests/golden/tiny_v32_fp8";
  auto plain = Model::load(dir, be);
  auto nccl = Model::load(dir, be, {}, TensorParallel{0, 1, false, &g});
  const int32_t page = 16;
  auto c1 = plain->make_cache(16, page, DType::BF16), c2 = nccl->make_cache(16, page, DType::BF16);
  ForwardBatch pre = prompt_batch(plain->config(), 3, page);
  auto a = plain->forward(pre, c1), b = nccl->forward(pre, c2);
  expect(same_bits(a.logits, b.logits), "tiny_v32_fp8 prefill through a one-rank NCCL group: same logits");
  // Decode steps replayed from graphs recorded with the NCCL calls inside.
  runtime::StepRecorder rec(*nccl, 4, false);
  const int made = rec.record_all(runtime::ForwardMode::Decode, 1, 4, 64, c2);
  expect(made > 0, "decode graphs with NCCL collectives recorded (" + std::to_string(made) + " shapes)");
  ForwardBatch step;
  for (size_t s = 0; s < pre.seqs.size(); ++s) {
    SequenceChunk sc;
    sc.tokens = {int32_t(s + 5)};
    sc.start_pos = int32_t(pre.seqs[s].tokens.size());
    sc.page_table = pre.seqs[s].page_table;
    step.seqs.push_back(sc);
  }
  auto replayed = rec.forward(runtime::ForwardMode::Decode, step, c2);
  expect(replayed.has_value(), "the decode step replays from a recorded graph");
  auto eager = plain->forward(step, c1);
  if (replayed) {
    const Err e = compare(be.to_host_f32(replayed->logits), eager.logits);
    expect(e.maxrel < 1e-5, "replayed NCCL decode step vs the plain model op by op: max rel " + std::to_string(e.maxrel));
  }
}

// ids in [first, first + count) -> local, others -1 and skipped: GPU against the CPU backend.
void expert_parallel_ids(backend::Backend& gpu) {
  auto cpu = backend::make_cpu_backend(0);
  const int64_t T = 37, H = 256, I = 128, k = 4, E = 8, first = 4, count = 4;
  std::vector<backend::ExpertWeights> wc, wg;
  for (int64_t e = 0; e < count; ++e) {
    auto lin = [&](int64_t out, int64_t in) {  // BF16, as checkpoints ship expert weights that are not FP8
      Tensor f = randn({out, in}, 0.05f);
      std::vector<uint16_t> b(size_t(out * in));
      for (size_t i = 0; i < b.size(); ++i) b[i] = f32_to_bf16(f.f32()[i]);
      backend::HostTensor ht{"w", DType::BF16, {out, in}, b.data()};
      return std::make_pair(cpu->load_linear(ht, nullptr), gpu.load_linear(ht, nullptr));
    };
    auto [g0, g1] = lin(I, H);
    auto [u0, u1] = lin(I, H);
    auto [d0, d1] = lin(H, I);
    wc.push_back({g0, u0, d0});
    wg.push_back({g1, u1, d1});
  }
  auto sc = cpu->prepare_experts(wc);
  auto sg = gpu.prepare_experts(wg);
  Tensor ids = Tensor::empty({T, k}, DType::I32), w = randn({T, k}, 0.3f, 0.5f), x = randn({T, H});
  for (int64_t i = 0; i < T * k; ++i) ids.i32()[i] = int32_t(rng()() % uint32_t(E));
  Tensor ids_c = Tensor::empty({T, k}, DType::I32);
  std::memcpy(ids_c.raw(), ids.raw(), ids.nbytes());
  cpu->moe_local_ids(ids_c, int32_t(first), int32_t(count));
  Tensor ids_g = gpu.from_host(ids);
  gpu.moe_local_ids(ids_g, int32_t(first), int32_t(count));
  Tensor back = gpu.to_host_f32(ids_g);  // ints read back as floats
  bool ids_ok = true;
  for (int64_t i = 0; i < T * k; ++i) ids_ok = ids_ok && int32_t(back.f32()[i]) == ids_c.i32()[i];
  expect(ids_ok, "moe_local_ids on the GPU equals the CPU's");
  Tensor yc = cpu->moe_experts(x, ids_c, w, *sc);
  Tensor yg = gpu.to_host_f32(gpu.moe_experts(gpu.from_host(x), ids_g, gpu.from_host(w), *sg));
  const Err e = compare(yg, yc);
  // The same experts with every id local (no -1): separates the skipping from the op's own error.
  Tensor all = Tensor::empty({T, k}, DType::I32);
  for (int64_t i = 0; i < T * k; ++i) all.i32()[i] = int32_t(rng()() % uint32_t(count));
  const Err e_all = compare(gpu.to_host_f32(gpu.moe_experts(gpu.from_host(x), gpu.from_host(all), gpu.from_host(w), *sg)),
                            cpu->moe_experts(x, all, w, *sc));
  std::printf("moe_experts GPU vs CPU (%s path): every id local rel %.3g, other ranks' ids skipped rel %.3g\n",
              dynamic_cast<backend::cuda::CudaBackend&>(gpu).last_moe_path(), e_all.rel, e.rel);
  expect(e.rel < 1e-2, "moe_experts with other ranks' experts skipped: GPU vs CPU rel " + std::to_string(e.rel));
}

// Two tensor-parallel ranks on the one GPU: NCCL refuses two ranks on one device, so this test-only group
// stages each collective through the host (a LocalGroup) with full synchronisation. It checks the CUDA
// kernels on a model cut in two (half the heads, half of every MLP and expert, half the vocabulary), not
// the collectives' speed; no graphs (a host round trip cannot be recorded).
class StagedGroup final : public dist::Group {
 public:
  StagedGroup(std::unique_ptr<dist::Group> host, backend::Backend& be) : host_(std::move(host)), be_(be) {}
  int rank() const override { return host_->rank(); }
  int size() const override { return host_->size(); }
  std::string name() const override { return "staged"; }
  void all_reduce_sum(Tensor& t) override {
    Tensor h = be_.to_host_f32(t);
    host_->all_reduce_sum(h);
    put(h, t);
  }
  void all_gather(const Tensor& in, Tensor& out) override {
    Tensor h = be_.to_host_f32(in), all = Tensor::empty(out.shape(), DType::F32);
    host_->all_gather(h, all);
    put(all, out);
  }
  void reduce_scatter_sum(const Tensor& in, Tensor& out) override {
    Tensor h = be_.to_host_f32(in), mine = Tensor::empty(out.shape(), DType::F32);
    host_->reduce_scatter_sum(h, mine);
    put(mine, out);
  }
  void broadcast(Tensor& t, int root) override {
    Tensor h = be_.to_host_f32(t);
    host_->broadcast(h, root);
    put(h, t);
  }
  void abort(const std::string& why) override { host_->abort(why); }
  bool aborted() const override { return host_->aborted(); }

 private:
  void put(const Tensor& h, Tensor& dev) {
    be_.make_current();
    cudaMemcpy(dev.raw(), h.raw(), h.nbytes(), cudaMemcpyHostToDevice);
    cudaDeviceSynchronize();
  }
  std::unique_ptr<dist::Group> host_;
  backend::Backend& be_;
};

// Two CUDA ranks: on GPUs 0 and 1 joined by NCCL, or both on GPU 0 through the host-staged group.
std::pair<std::vector<std::unique_ptr<backend::Backend>>, std::vector<std::unique_ptr<dist::Group>>> two_cuda_ranks(
    bool nccl) {
  std::vector<std::unique_ptr<backend::Backend>> bes;
  std::vector<std::unique_ptr<dist::Group>> groups;
  if (nccl) {
    for (int r = 0; r < 2; ++r) bes.push_back(backend::make_cuda_backend(r));
    groups = dist::make_nccl_groups({bes[0].get(), bes[1].get()});
  } else {
    auto hosts = dist::make_local_groups(2);
    for (int r = 0; r < 2; ++r) {
      bes.push_back(backend::make_cuda_backend(0));
      groups.push_back(std::make_unique<StagedGroup>(std::move(hosts[size_t(r)]), *bes.back()));
    }
  }
  return {std::move(bes), std::move(groups)};
}

// tiny_v32_fp8 / tiny_v3_bf16 cut over two CUDA ranks (exact GEMM mode: DSSERVE_CUDA_GEMM=exact from
// gpu-check.sh) against one rank: prefill logits, with and without --ep. nccl: ranks on GPUs 0 and 1 joined
// by NCCL (machines with two GPUs: issue 15); else both on GPU 0 through the host-staged group.
// With an fp32 KV cache the ranks must agree to 1e-4. With the BF16 cache the reduction order's 1e-7-level
// differences flip roundings of cached latents, and, rarely, a near-tie of a token's expert routing: a jump
// in that sequence's later tokens (tiny_v3_bf16 --ep 2 with the MHA prefill: 4.2e-4, one sequence, median
// 6e-7). That comparison is reported with its worst tokens and fails only beyond 1e-2.
void two_ranks(bool nccl) {
  for (const char* name : {"tiny_v32_fp8", "tiny_v3_bf16"})
    for (bool ep : {false, true})
      for (DType kv : {DType::F32, DType::BF16}) {
        const std::string dir = std::string(DS_SOURCE_DIR) + "/tests/golden/" + name;
        auto one_be = backend::make_cuda_backend(0);
        auto one = Model::load(dir, *one_be);
        auto cache1 = one->make_cache(16, 16, kv);
        ForwardBatch pre = prompt_batch(one->config(), 3, 16);
        for (auto& sq : pre.seqs) sq.logits = LogitsMode::All;
        Tensor want = one->forward(pre, cache1).logits;
        auto [bes, groups] = two_cuda_ranks(nccl);
        std::vector<std::future<Tensor>> f;
        for (int r = 0; r < 2; ++r)
          f.push_back(std::async(std::launch::async, [&, r] {
            bes[size_t(r)]->make_current();
            auto m = Model::load(dir, *bes[size_t(r)], {}, TensorParallel{r, 2, ep, groups[size_t(r)].get()});
            auto cache = m->make_cache(16, 16, kv);
            return m->forward(pre, cache).logits;
          }));
        Tensor got = f[0].get();
        f[1].get();
        const Err e = compare(got, want);
        // Where the difference sits: a few tokens of one sequence far above the median is a discrete event
        // propagating through attention; differences spread over every token are noise.
        std::vector<std::pair<double, int64_t>> rows;
        const int64_t V = want.dim(1);
        double ref_max = 0;
        for (int64_t i = 0; i < want.numel(); ++i) ref_max = std::max(ref_max, double(std::fabs(want.f32()[i])));
        for (int64_t r = 0; r < want.dim(0); ++r) {
          double d = 0;
          for (int64_t v = 0; v < V; ++v) d = std::max(d, double(std::fabs(got.f32()[r * V + v] - want.f32()[r * V + v])));
          rows.emplace_back(d / ref_max, r);
        }
        std::sort(rows.rbegin(), rows.rend());
        const std::string what =
            std::string(name) + (ep ? " --tp 2 --ep 2" : " --tp 2") +
            (nccl ? " on GPUs 0 and 1 (NCCL)" : " on one GPU (staged collectives)") +
            (kv == DType::F32 ? ", fp32 KV" : ", bf16 KV") + " vs one rank: max rel " + std::to_string(e.maxrel) +
            fmt::format(" (worst tokens of {}: {} at {:.2e}, {} at {:.2e}, {} at {:.2e}; median {:.2e})", rows.size(),
                        rows[0].second, rows[0].first, rows[1].second, rows[1].first, rows[2].second, rows[2].first,
                        rows[rows.size() / 2].first);
        if (kv == DType::F32) expect(e.maxrel < 1e-4, what);
        else if (e.maxrel < 1e-2) std::printf("info %s\n", what.c_str());
        else expect(false, what);
      }
}

// DP attention over two CUDA ranks (--tp 2 --dp 2 --enable-dp-attention): each rank its own DP group and
// batch (3 sequences / 1), the MoE exchanged between them, against one rank on each group's batch alone;
// then a decode step padded as a recorded one would be (both groups to the bucket of 3; then the second
// group idle). nccl as two_ranks.
void dp_attention_two_ranks(bool nccl) {
  for (const char* name : {"tiny_v32_fp8", "tiny_v3_bf16"}) {
    const std::string dir = std::string(DS_SOURCE_DIR) + "/tests/golden/" + name;
    auto one_be = backend::make_cuda_backend(0);
    auto one = Model::load(dir, *one_be);
    std::vector<ForwardBatch> pre = {prompt_batch(one->config(), 3, 16), prompt_batch(one->config(), 1, 16)};
    auto decode_of = [](const ForwardBatch& p) {
      ForwardBatch d = p;
      for (size_t s = 0; s < d.seqs.size(); ++s) {
        d.seqs[s].start_pos = int32_t(p.seqs[s].tokens.size());
        d.seqs[s].tokens = {int32_t(5 + s)};
      }
      return d;
    };
    std::vector<Tensor> want_pre, want_dec;
    for (const auto& p : pre) {
      auto c = one->make_cache(16, 16, DType::BF16);
      want_pre.push_back(one->forward(p, c).logits);
      want_dec.push_back(one->forward(decode_of(p), c).logits);
    }
    auto [bes, groups] = two_cuda_ranks(nccl);
    struct Out {
      Tensor pre, dec, dec_alone;
    };
    std::vector<std::future<Out>> f;
    for (int r = 0; r < 2; ++r)
      f.push_back(std::async(std::launch::async, [&, r] {
        bes[size_t(r)]->make_current();
        TensorParallel tp{r, 2, false, groups[size_t(r)].get()};
        tp.dp = 2;
        auto m = Model::load(dir, *bes[size_t(r)], {}, tp);
        auto cache = m->make_cache(16, 16, DType::BF16);
        ForwardBatch p = pre[size_t(r)];
        p.dp_tokens = {0, 0};
        for (int g = 0; g < 2; ++g)
          for (const auto& sq : pre[size_t(g)].seqs) p.dp_tokens[size_t(g)] += int32_t(sq.tokens.size());
        Out o;
        o.pre = m->forward(p, cache).logits;
        runtime::StepRecorder rec(*m, 8, false);
        ForwardBatch d = decode_of(pre[size_t(r)]);
        d.dp_tokens = {3, 1};
        d.dp_decode_bs = 3;
        o.dec = rec.forward_padded_eager(runtime::ForwardMode::Decode, d, cache).logits;
        // Again from the same cache contents (the decode token rewrites the same slot), rank 1 idle.
        ForwardBatch alone = r == 0 ? decode_of(pre[0]) : ForwardBatch{};
        alone.dp_tokens = {3, 0};
        alone.dp_decode_bs = 3;
        o.dec_alone = rec.forward_padded_eager(runtime::ForwardMode::Decode, alone, cache).logits;
        return o;
      }));
    std::vector<Out> got;
    for (auto& x : f) got.push_back(x.get());
    const std::string where = nccl ? " on GPUs 0 and 1 (NCCL)" : " on one GPU (staged collectives)";
    // Bound: BF16 activations and KV, and a group's MoE rows now share the grouped kernels with the other
    // group's (another path and tiling than one rank's batch alone): the first H200 run measured 7.7e-5 /
    // 1.04e-4 max rel for one group (RMS far lower), --tp 2 --ep 2 gives 5.2e-5 on the same GPU; a wrong
    // exchange gives ~1 (the CPU test's mutation check).
    const double bound = 3e-4;
    for (int g = 0; g < 2; ++g) {
      const Err ep = compare(got[size_t(g)].pre, want_pre[size_t(g)]);
      const Err ed = compare(got[size_t(g)].dec, want_dec[size_t(g)]);
      expect(ep.maxrel < bound && ed.maxrel < bound,
             std::string(name) + " --tp 2 --dp 2 --enable-dp-attention" + where + ", DP group " + std::to_string(g) +
                 " vs one rank: prefill max rel " + std::to_string(ep.maxrel) + " (rms " + std::to_string(ep.rel) +
                 "), padded decode " + std::to_string(ed.maxrel) + " (rms " + std::to_string(ed.rel) + ")");
    }
    const Err ea = compare(got[0].dec_alone, want_dec[0]);
    expect(ea.maxrel < bound, std::string(name) + " DP attention, padded decode with the other group idle: max rel " +
                                 std::to_string(ea.maxrel));
  }
}

// NCCL collectives over GPUs 0..n-1 on [T, 7168] rows (the hidden state between layers): all-reduce in fp32
// (what the model sums today) and bf16, and DP attention's MoE exchange in bf16 — all-gather of T rows per
// rank, reduce-scatter back. Latency: median of 50 after 10 warm-up, host-timed around a device sync, the
// slowest rank. Bus bandwidth as nccl-tests defines it (all-reduce: 2 (n - 1) / n x bytes; all-gather and
// reduce-scatter: (n - 1) / n x the gathered bytes, per unit time), so scripts/bench_torch_collectives.py's
// table (the same sizes through torch.distributed, in the same call) is its peer.
void collective_tables(int n) {
  std::vector<std::unique_ptr<backend::Backend>> bes;
  std::vector<backend::Backend*> raw;
  for (int r = 0; r < n; ++r) {
    bes.push_back(backend::make_cuda_backend(r));
    raw.push_back(bes.back().get());
  }
  auto groups = dist::make_nccl_groups(raw);
  enum class Op { AllReduce, AllGather, ReduceScatter };
  struct Kind {
    const char* name;
    Op op;
    DType dt;
  };
  const Kind kinds[] = {{"all-reduce fp32", Op::AllReduce, DType::F32},
                        {"all-reduce bf16", Op::AllReduce, DType::BF16},
                        {"all-gather bf16", Op::AllGather, DType::BF16},
                        {"reduce-scatter bf16", Op::ReduceScatter, DType::BF16}};
  std::printf("collectives, %d GPUs, [T, 7168] rows per rank (T: tokens): op, T, us, bus GB/s\n", n);
  for (const Kind& k : kinds)
    for (int64_t T : {1, 8, 32, 128, 1024}) {
      std::vector<std::future<double>> f;
      for (int r = 0; r < n; ++r)
        f.push_back(std::async(std::launch::async, [&, r] {
          backend::Backend& be = *bes[size_t(r)];
          be.make_current();
          Tensor small = be.alloc({T, 7168}, k.dt), big = be.alloc({T * n, 7168}, k.dt);
          std::vector<double> us;
          for (int i = 0; i < 60; ++i) {
            cudaDeviceSynchronize();
            const auto t0 = std::chrono::steady_clock::now();
            dist::Group& g = *groups[size_t(r)];
            if (k.op == Op::AllReduce) g.all_reduce_sum(small);
            else if (k.op == Op::AllGather) g.all_gather(small, big);
            else g.reduce_scatter_sum(big, small);
            cudaDeviceSynchronize();
            const auto t1 = std::chrono::steady_clock::now();
            if (i >= 10) us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
          }
          std::sort(us.begin(), us.end());
          return us[us.size() / 2];
        }));
      double worst = 0;
      for (auto& x : f) worst = std::max(worst, x.get());
      const double row_bytes = double(T) * 7168 * double(dtype_size(k.dt));
      const double bus = k.op == Op::AllReduce ? 2.0 * (n - 1) / n * row_bytes : double(n - 1) / n * row_bytes * n;
      std::printf("  %-20s %5lld %9.1f %9.1f\n", k.name, (long long)T, worst, bus / (worst * 1e-6) / 1e9);
    }
}

}  // namespace

int main(int argc, char** argv) {
  // The custom all-reduce's ranks on one GPU spin at once: each rank's stream needs a hardware queue of its
  // own (CUDA's default of 8 is shared by all streams of the process, in turn).
  setenv("CUDA_DEVICE_MAX_CONNECTIONS", "32", 0);
  // And no kernel may load lazily while they do: a first launch can synchronise the (shared) context, which
  // waits for a peer's spinning kernel that waits for this rank (CUDA programming guide, "Lazy Loading").
  // The custom all-reduce preloads its own kernels; everything else the checks launch loads now.
  setenv("CUDA_MODULE_LOADING", "EAGER", 0);
  int gpus = 0;
  cudaGetDeviceCount(&gpus);
  if (argc > 1 && std::string(argv[1]) == "peer") {  // the custom all-reduce's checks alone
    peercheck::peer_all_reduce_one_gpu(expect);
    if (gpus >= 2) peercheck::peer_all_reduce_groups(gpus, expect);
    std::printf("== gpu_dist_check peer: %d checks, %d failed ==\n", checks, failures);
    return failures ? 1 : 0;
  }
  peercheck::peer_all_reduce_one_gpu(expect);  // first: before any other stream (gpu_dist_check_peer.cpp)
  auto be = backend::make_cuda_backend(0);
  auto groups = dist::make_nccl_groups({be.get()});
  collectives(*be, *groups[0]);
  model_through_nccl(*be, *groups[0]);
  expert_parallel_ids(*be);
  two_ranks(false);
  dp_attention_two_ranks(false);
  if (gpus >= 2) {
    two_ranks(true);
    dp_attention_two_ranks(true);
    collective_tables(gpus);
    peercheck::peer_all_reduce_groups(gpus, expect);
  } else {
    std::printf("one GPU: the NCCL runs over two GPUs (tp2 vs one rank, the collective tables) are skipped\n");
  }
  std::printf("== gpu_dist_check: %d checks, %d failed ==\n", checks, failures);
  return failures ? 1 : 0;
}
