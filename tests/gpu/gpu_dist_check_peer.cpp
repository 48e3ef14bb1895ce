// The custom all-reduce (dist/peer_all_reduce.h, backend/cuda/k_peer_all_reduce.cu). On one GPU its ranks
// are CudaBackends on device 0, each on a thread of its own, all spinning at once: that needs every rank's
// blocks resident together (8 ranks x at most 32 blocks of 512 threads, 2 per SM by the kernel's launch
// bounds: 256 <= 2 x 132 SMs of an H100/H200) and every rank's stream on its own hardware queue: CUDA maps
// streams onto CUDA_DEVICE_MAX_CONNECTIONS queues in turn, so gpu_dist_check raises that to 32 and runs
// these checks first, over one set of 8 backends without side streams made before any other stream. And no
// rank may allocate (cudaMalloc, graph instantiation: calls that can wait for the whole device) while a
// peer's kernel spins waiting for it: every phase allocates first and meets the other ranks at a barrier
// before its first all-reduce. Nor may any kernel load lazily meanwhile (a first launch can synchronise the
// shared context): the all-reduce preloads its kernels and gpu_dist_check loads the rest eagerly. (Runs
// without these guards hit the 20 s timeout once per rank count, at a different rank count each run, and
// the timeout's sticky abort then ended every later wait early with its sums undone, so the checks after it
// failed; session 23's run still failed at 2 ranks with the barriers in place, before the loading fix.)
// Each phase also checks that no wait timed out.
#include "gpu_dist_check_peer.h"

#include <cuda_runtime.h>
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <future>
#include <random>
#include <thread>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "dist/nccl_group.h"
#include "dist/peer_all_reduce.h"
#include "tensor/dtype.h"

using namespace ds;
using backend::cuda::CudaBackend;
using backend::cuda::kPeerMaxBytes;
using Clock = std::chrono::steady_clock;

namespace peercheck {
namespace {

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Inputs: a hash of (seed, index) -> values of magnitudes 2^-8 .. 2^7, so that any other summation order
// than rank order shows in the bits. BF16 inputs are these values rounded.
float value(uint64_t seed, int64_t i) {
  uint64_t z = seed * 0x9e3779b97f4a7c15ull + uint64_t(i) + 1;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  const float u = float(int32_t(uint32_t(z))) * (1.0f / 2147483648.0f);
  return std::ldexp(u, int((z >> 40) % 16) - 8);
}
uint64_t seed_of(int rank, int call, int slot = 0) {
  return (uint64_t(rank + 1) << 40) ^ (uint64_t(call) << 8) ^ uint64_t(slot);
}

struct Msg {
  DType dt;
  int64_t n;
  size_t bytes() const { return size_t(n) * dtype_size(dt); }
};

float input(const Msg& m, uint64_t seed, int64_t i) {
  const float v = value(seed, i);
  return m.dt == DType::BF16 ? bf16_to_f32(f32_to_bf16(v)) : v;
}
void put(const Msg& m, std::vector<uint8_t>& b, int64_t i, float v) {
  if (m.dt == DType::BF16) {
    const uint16_t h = f32_to_bf16(v);
    std::memcpy(&b[size_t(i) * 2], &h, 2);
  } else {
    std::memcpy(&b[size_t(i) * 4], &v, 4);
  }
}
std::vector<uint8_t> input_bytes(const Msg& m, uint64_t seed) {
  std::vector<uint8_t> b(m.bytes());
  for (int64_t i = 0; i < m.n; ++i) put(m, b, i, input(m, seed, i));
  return b;
}
// What every rank must hold, bit for bit: f32 sums in rank order, BF16 rounded once at the end.
std::vector<uint8_t> reference(const Msg& m, int ranks, const std::function<uint64_t(int)>& seed) {
  std::vector<uint8_t> b(m.bytes());
  for (int64_t i = 0; i < m.n; ++i) {
    float acc = input(m, seed(0), i);
    for (int r = 1; r < ranks; ++r) acc += input(m, seed(r), i);
    put(m, b, i, acc);
  }
  return b;
}

// The 8 ranks' backends on GPU 0, made once by peer_all_reduce_one_gpu (see the top: one stream each,
// made before any other) and used by every check of it.
std::vector<CudaBackend*> g_gpu0;

struct Ranks {
  std::vector<CudaBackend*> cuda;
  std::unique_ptr<dist::PeerAllReduce> ar;
};
Ranks ranks_on_gpu0(int n, double timeout_s = 20) {
  Ranks rk;
  rk.cuda.assign(g_gpu0.begin(), g_gpu0.begin() + n);
  dist::PeerAllReduceOptions o;
  o.timeout_s = timeout_s;
  std::string why;
  rk.ar = dist::PeerAllReduce::make(rk.cuda, o, &why);
  DS_CHECK(rk.ar, "PeerAllReduce over {} ranks on GPU 0: {}", n, why);
  return rk;
}
// f(r) on a thread per rank (its device current), ranks [0, count) (all when count < 0).
void on_ranks(const std::vector<CudaBackend*>& cuda, const std::function<void(int)>& f, int count = -1) {
  std::vector<std::future<void>> fs;
  for (int r = 0; r < (count < 0 ? int(cuda.size()) : count); ++r)
    fs.push_back(std::async(std::launch::async, [&, r] {
      cuda[size_t(r)]->make_current();
      f(r);
    }));
  for (auto& x : fs) x.get();
}

// A device tensor of m with these bytes; misaligned: starting one element into its allocation (not 16-byte
// aligned: the kernel's element-wise input and output path).
Tensor upload(CudaBackend& be, const Msg& m, const std::vector<uint8_t>& bytes, bool misaligned = false) {
  Tensor t = be.alloc({m.n + 1}, m.dt).rows(misaligned ? 1 : 0, m.n + (misaligned ? 1 : 0));
  DS_CUDA_CHECK(cudaMemcpyAsync(t.raw(), bytes.data(), bytes.size(), cudaMemcpyHostToDevice, be.stream()));
  DS_CUDA_CHECK(cudaStreamSynchronize(be.stream()));  // the caller's bytes may go now
  return t;
}
std::vector<uint8_t> download(CudaBackend& be, const Tensor& t) {
  std::vector<uint8_t> b(t.nbytes());
  DS_CUDA_CHECK(cudaMemcpyAsync(b.data(), t.raw(), b.size(), cudaMemcpyDeviceToHost, be.stream()));
  DS_CUDA_CHECK(cudaStreamSynchronize(be.stream()));
  return b;
}

const char* dname(DType d) { return d == DType::BF16 ? "BF16" : "F32"; }

// The all-reduces `calls` issues on this rank's stream, captured into a graph of its own (thread-local
// capture: the other ranks' threads keep calling CUDA meanwhile) and instantiated.
struct RankGraph {
  RankGraph(cudaStream_t st, const std::function<void()>& calls) {
    DS_CUDA_CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    calls();
    DS_CUDA_CHECK(cudaStreamEndCapture(st, &graph));
    DS_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  }
  ~RankGraph() {
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
  }
  RankGraph(const RankGraph&) = delete;
  RankGraph& operator=(const RankGraph&) = delete;
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
};

// (a) every size, both dtypes, aligned and not: each rank's result against the reference.
void sizes(Ranks& rk, Expect expect) {
  const int n = int(rk.cuda.size());
  int call = 0;
  for (DType dt : {DType::F32, DType::BF16}) {
    std::string bad;
    int runs = 0;
    for (int64_t len : {int64_t(1), int64_t(7), int64_t(7168), int64_t(8 * 7168), int64_t(32 * 7168), int64_t(65536 + 3)})
      for (bool misaligned : {false, true}) {
        const Msg m{dt, len};
        if (m.bytes() > kPeerMaxBytes) continue;
        ++call, ++runs;
        const auto want = reference(m, n, [&](int r) { return seed_of(r, call); });
        std::vector<char> ok(static_cast<size_t>(n), 0);
        std::barrier ready(n);
        on_ranks(rk.cuda, [&](int r) {
          CudaBackend& be = *rk.cuda[size_t(r)];
          Tensor t = upload(be, m, input_bytes(m, seed_of(r, call)), misaligned);
          ready.arrive_and_wait();  // no rank allocates while another's kernel waits for it (see the top)
          rk.ar->run(t, r, be.stream());
          ok[size_t(r)] = download(be, t) == want;
        });
        for (int r = 0; r < n; ++r)
          if (!ok[size_t(r)]) bad += fmt::format(" {}{}@rank{}", len, misaligned ? "(misaligned)" : "", r);
      }
    expect(bad.empty(), fmt::format("custom all-reduce, {} ranks on one GPU, {} ({} sizes, aligned and not): every "
                                    "rank's sum equals the rank-order reference bit for bit{}",
                                    n, dname(dt), runs, bad.empty() ? "" : "; wrong:" + bad));
  }
}

// (b) 300 calls of random dtypes and sizes (the same on every rank) without a host sync between them: the
// parities and per-block epochs under calls of different grids.
void back_to_back(Ranks& rk, Expect expect) {
  const int n = int(rk.cuda.size());
  std::mt19937 g(1234 + n);
  std::vector<Msg> calls;
  for (int i = 0; i < 300; ++i) {
    const DType dt = g() % 2 ? DType::BF16 : DType::F32;
    const int64_t most = int64_t(kPeerMaxBytes / dtype_size(dt));
    calls.push_back({dt, 1 + int64_t(g() % uint32_t(g() % 2 ? 9000 : most))});
  }
  std::vector<std::vector<uint8_t>> want;
  for (int i = 0; i < 300; ++i) want.push_back(reference(calls[size_t(i)], n, [&](int r) { return seed_of(r, 1000 + i); }));
  std::vector<int> wrong(static_cast<size_t>(n), 0);
  std::barrier ready(n);
  on_ranks(rk.cuda, [&](int r) {
    CudaBackend& be = *rk.cuda[size_t(r)];
    std::vector<Tensor> ts;
    for (int i = 0; i < 300; ++i) ts.push_back(upload(be, calls[size_t(i)], input_bytes(calls[size_t(i)], seed_of(r, 1000 + i))));
    DS_CUDA_CHECK(cudaStreamSynchronize(be.stream()));
    ready.arrive_and_wait();
    for (auto& t : ts) rk.ar->run(t, r, be.stream());
    for (int i = 0; i < 300; ++i) wrong[size_t(r)] += download(be, ts[size_t(i)]) != want[size_t(i)];
  });
  int total = 0;
  for (int w : wrong) total += w;
  expect(total == 0, fmt::format("custom all-reduce, {} ranks on one GPU: 300 back-to-back calls of random sizes and "
                                 "dtypes, every result bitwise right ({} wrong of {})",
                                 n, total, 300 * n));
}

// (c) each rank captures 3 all-reduces into a graph of its own, then 50 replays with new inputs.
void graphs(Ranks& rk, Expect expect) {
  const int n = int(rk.cuda.size());
  const Msg ms[3] = {{DType::F32, 7168}, {DType::BF16, 8 * 7168}, {DType::F32, 65536 + 3}};
  std::vector<int> wrong(static_cast<size_t>(n), 0);
  std::barrier ready(n);
  on_ranks(rk.cuda, [&](int r) {
    CudaBackend& be = *rk.cuda[size_t(r)];
    std::vector<Tensor> ts;
    for (const Msg& m : ms) ts.push_back(upload(be, m, std::vector<uint8_t>(m.bytes(), 0)));
    DS_CUDA_CHECK(cudaStreamSynchronize(be.stream()));
    const RankGraph g(be.stream(), [&] {
      for (auto& t : ts) rk.ar->run(t, r, be.stream());
    });
    ready.arrive_and_wait();
    for (int rep = 0; rep < 50; ++rep) {
      std::vector<uint8_t> in[3];  // alive until the downloads below have synchronised the stream
      for (int k = 0; k < 3; ++k) {
        in[k] = input_bytes(ms[k], seed_of(r, 5000 + rep, k));
        DS_CUDA_CHECK(cudaMemcpyAsync(ts[size_t(k)].raw(), in[k].data(), in[k].size(), cudaMemcpyHostToDevice,
                                      be.stream()));
      }
      // Every rank's inputs are in before any rank's graph spins: a rank's copies queued behind a peer's
      // waiting kernel on the GPU's shared copy engines stalled 4 and 8 ranks into the 20 s timeout (session
      // 22; the eager checks, which meet at a barrier after their uploads, passed).
      DS_CUDA_CHECK(cudaStreamSynchronize(be.stream()));
      ready.arrive_and_wait();
      DS_CUDA_CHECK(cudaGraphLaunch(g.exec, be.stream()));
      for (int k = 0; k < 3; ++k)
        wrong[size_t(r)] += download(be, ts[size_t(k)]) !=
                            reference(ms[k], n, [&](int q) { return seed_of(q, 5000 + rep, k); });
    }
  });
  int total = 0;
  for (int w : wrong) total += w;
  expect(total == 0, fmt::format("custom all-reduce, {} ranks on one GPU: 3 calls captured in each rank's CUDA graph, "
                                 "50 replays with new inputs, every result bitwise right ({} wrong of {})",
                                 n, total, 150 * n));
}

// (d) rank n - 1 never calls: abort() must end the others' kernels at once (their tensors untouched), and
// a short timeout must end them by itself and name the missing rank.
void abort_and_timeout(int n, Expect expect) {
  const Msg m{DType::F32, 7168};
  for (bool timeout : {false, true}) {
    Ranks rk = ranks_on_gpu0(n, timeout ? 0.5 : 20);
    std::vector<Tensor> ts;
    std::vector<std::vector<uint8_t>> ins;
    for (int r = 0; r < n; ++r) {
      rk.cuda[size_t(r)]->make_current();
      ins.push_back(input_bytes(m, seed_of(r, 7)));
      ts.push_back(upload(*rk.cuda[size_t(r)], m, ins.back()));
      DS_CUDA_CHECK(cudaStreamSynchronize(rk.cuda[size_t(r)]->stream()));
    }
    std::atomic<int> returned{0};
    std::vector<double> at(static_cast<size_t>(n), 0);
    std::vector<char> untouched(static_cast<size_t>(n), 0);
    const auto start = Clock::now();
    auto waiting = std::async(std::launch::async, [&] {
      on_ranks(
          rk.cuda,
          [&](int r) {
            CudaBackend& be = *rk.cuda[size_t(r)];
            rk.ar->run(ts[size_t(r)], r, be.stream());
            untouched[size_t(r)] = download(be, ts[size_t(r)]) == ins[size_t(r)];
            at[size_t(r)] = seconds_since(start);
            ++returned;
          },
          n - 1);
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    const int early = returned.load();
    if (!timeout) rk.ar->abort();
    waiting.get();
    double last = 0;
    bool all_untouched = true;
    for (int r = 0; r < n - 1; ++r) {
      last = std::max(last, at[size_t(r)]);
      all_untouched = all_untouched && untouched[size_t(r)];
    }
    const std::string failure = rk.ar->failure();
    if (!timeout) {
      expect(early == 0 && last < 2.2 && all_untouched && failure.empty(),
             fmt::format("custom all-reduce, {} ranks on one GPU, rank {} absent: waiting until abort() at 0.2 s "
                         "({} returned before), all ended by {:.3f} s, tensors untouched: {}, no timeout recorded: {}",
                         n, n - 1, early, last, all_untouched, failure.empty()));
    } else {
      const bool named = failure.find(fmt::format("for rank {}", n - 1)) != std::string::npos;
      expect(early == 0 && last > 0.5 && last < 3 && all_untouched && named,
             fmt::format("custom all-reduce, {} ranks on one GPU, rank {} absent, timeout 0.5 s: all ended at "
                         "{:.3f} s, tensors untouched: {}, failure names the rank: '{}'",
                         n, n - 1, last, all_untouched, failure));
    }
  }
}

// (e) microseconds per all-reduce, the slowest rank, mean of 1000 calls: eager and from a graph.
void timing(int n) {
  Ranks rk = ranks_on_gpu0(n);
  std::printf("custom all-reduce, %d ranks on ONE GPU (no NVLink): a kernel-overhead figure, not a multi-GPU "
              "measurement; us per call (eager / in a CUDA graph):\n", n);
  for (DType dt : {DType::F32, DType::BF16})
    for (int64_t T : {1, 8, 32}) {
      const Msg m{dt, T * 7168};
      if (m.bytes() > kPeerMaxBytes) {
        std::printf("  %-4s [%3lld, 7168]  above the limit (NCCL)\n", dname(dt), (long long)T);
        continue;
      }
      std::barrier sync(n);
      std::vector<double> eager(static_cast<size_t>(n)), graph(static_cast<size_t>(n));
      on_ranks(rk.cuda, [&](int r) {
        CudaBackend& be = *rk.cuda[size_t(r)];
        Tensor t = be.alloc({m.n}, dt);
        sync.arrive_and_wait();
        for (int i = 0; i < 20; ++i) rk.ar->run(t, r, be.stream());
        DS_CUDA_CHECK(cudaStreamSynchronize(be.stream()));
        sync.arrive_and_wait();
        auto t0 = Clock::now();
        for (int i = 0; i < 1000; ++i) rk.ar->run(t, r, be.stream());
        DS_CUDA_CHECK(cudaStreamSynchronize(be.stream()));
        eager[size_t(r)] = seconds_since(t0) * 1e3;  // us per call
        const RankGraph g(be.stream(), [&] {
          for (int i = 0; i < 100; ++i) rk.ar->run(t, r, be.stream());
        });
        sync.arrive_and_wait();
        DS_CUDA_CHECK(cudaGraphLaunch(g.exec, be.stream()));
        DS_CUDA_CHECK(cudaStreamSynchronize(be.stream()));
        sync.arrive_and_wait();
        t0 = Clock::now();
        for (int i = 0; i < 10; ++i) DS_CUDA_CHECK(cudaGraphLaunch(g.exec, be.stream()));
        DS_CUDA_CHECK(cudaStreamSynchronize(be.stream()));
        graph[size_t(r)] = seconds_since(t0) * 1e3;
      });
      std::printf("  %-4s [%3lld, 7168] %8.2f %8.2f\n", dname(dt), (long long)T, *std::max_element(eager.begin(), eager.end()),
                  *std::max_element(graph.begin(), graph.end()));
    }
}

}  // namespace

void peer_all_reduce_one_gpu(Expect expect) {
  std::vector<std::unique_ptr<CudaBackend>> owned;
  for (int r = 0; r < backend::cuda::kPeerMaxRanks; ++r) {
    backend::cuda::CudaOptions o;
    o.overlap = false;  // no side stream
    owned.push_back(backend::cuda::make_cuda_backend(o));
    g_gpu0.push_back(owned.back().get());
  }
  for (int n : {2, 4, 8}) {
    Ranks rk = ranks_on_gpu0(n);  // one set for the three: epochs carry over from one to the next
    auto no_timeout = [&](const char* phase) {
      const std::string f = rk.ar->failure();
      expect(f.empty(), fmt::format("custom all-reduce, {} ranks on one GPU, {}: no wait timed out{}", n, phase,
                                    f.empty() ? "" : " (" + f + ")"));
    };
    sizes(rk, expect);
    no_timeout("sizes");
    back_to_back(rk, expect);
    no_timeout("back-to-back calls");
    graphs(rk, expect);
    no_timeout("graphs");
    abort_and_timeout(n, expect);
  }
  for (int n : {2, 8}) timing(n);
  g_gpu0.clear();
}

void peer_all_reduce_groups(int gpus, Expect expect) {
  const int n = std::min(gpus, 8);
  std::vector<std::unique_ptr<backend::Backend>> bes;
  std::vector<backend::Backend*> raw;
  std::vector<CudaBackend*> cuda;
  for (int r = 0; r < n; ++r) {
    bes.push_back(backend::make_cuda_backend(r));
    raw.push_back(bes.back().get());
    cuda.push_back(dynamic_cast<CudaBackend*>(raw.back()));
  }
  {  // bitwise sums through the group, and the latency next to NCCL's (host-timed, mean of 1000, slowest rank)
    dist::NcclGroupOptions on;
    on.custom_all_reduce_max_bytes = kPeerMaxBytes;
    auto custom = dist::make_nccl_groups(raw, on);
    dist::NcclGroupOptions off;
    off.custom_all_reduce = false;
    auto nccl = dist::make_nccl_groups(raw, off);
    std::printf("all-reduce over %d GPUs, us per call (custom / NCCL), mean of 1000:\n", n);
    int call = 0;
    for (DType dt : {DType::F32, DType::BF16})
      for (int64_t T : {1, 8, 32}) {
        const Msg m{dt, T * 7168};
        ++call;
        const auto want = reference(m, n, [&](int r) { return seed_of(r, 9000 + call); });
        std::vector<char> ok(static_cast<size_t>(n), 0);
        std::vector<double> us_custom(static_cast<size_t>(n)), us_nccl(static_cast<size_t>(n));
        std::barrier sync(n);
        on_ranks(cuda, [&](int r) {
          CudaBackend& be = *cuda[size_t(r)];
          Tensor t = upload(be, m, input_bytes(m, seed_of(r, 9000 + call)));
          sync.arrive_and_wait();  // allocations before any rank's first all-reduce (see the top)
          custom[size_t(r)]->all_reduce_sum(t);
          ok[size_t(r)] = download(be, t) == want;
          for (int k = 0; k < 2; ++k) {
            dist::Group& g = k == 0 ? *custom[size_t(r)] : *nccl[size_t(r)];
            for (int i = 0; i < 20; ++i) g.all_reduce_sum(t);
            DS_CUDA_CHECK(cudaStreamSynchronize(be.stream()));
            sync.arrive_and_wait();
            const auto t0 = Clock::now();
            for (int i = 0; i < 1000; ++i) g.all_reduce_sum(t);
            DS_CUDA_CHECK(cudaStreamSynchronize(be.stream()));
            (k == 0 ? us_custom : us_nccl)[size_t(r)] = seconds_since(t0) * 1e3;
          }
        });
        const bool fits = m.bytes() <= kPeerMaxBytes;
        bool all = true;
        for (char x : ok) all = all && x;
        if (fits)
          expect(all, fmt::format("NcclGroup over {} GPUs, {} [{}, 7168] through the custom all-reduce: every rank "
                                  "bitwise equal to the rank-order reference",
                                  n, dname(dt), T));
        std::printf("  %-4s [%3lld, 7168] %8.2f %8.2f%s\n", dname(dt), (long long)T,
                    *std::max_element(us_custom.begin(), us_custom.end()),
                    *std::max_element(us_nccl.begin(), us_nccl.end()), fits ? "" : "  (above the limit: both NCCL)");
      }
  }
  for (bool timeout : {false, true}) {  // rank n - 1 never calls
    dist::NcclGroupOptions o;
    o.custom_all_reduce_max_bytes = kPeerMaxBytes;
    o.custom_all_reduce_timeout_s = timeout ? 0.5 : 20;
    auto groups = dist::make_nccl_groups(raw, o);
    const Msg m{DType::F32, 7168};
    std::vector<double> at(static_cast<size_t>(n), 0);
    std::vector<std::string> thrown(static_cast<size_t>(n));
    const auto start = Clock::now();
    auto waiting = std::async(std::launch::async, [&] {
      on_ranks(
          cuda,
          [&](int r) {
            CudaBackend& be = *cuda[size_t(r)];
            Tensor t = upload(be, m, input_bytes(m, seed_of(r, 11)));
            try {  // (the first call throws already when the abort came first)
              groups[size_t(r)]->all_reduce_sum(t);
              DS_CUDA_CHECK(cudaStreamSynchronize(be.stream()));
              at[size_t(r)] = seconds_since(start);
              groups[size_t(r)]->all_reduce_sum(t);
            } catch (const dist::GroupAborted& e) {
              thrown[size_t(r)] = e.what();
            }
          },
          n - 1);
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    if (!timeout) groups[0]->abort("the check's abort");
    waiting.get();
    bool ok = true;
    double last = 0;
    for (int r = 0; r < n - 1; ++r) {
      last = std::max(last, at[size_t(r)]);
      ok = ok && thrown[size_t(r)].find(timeout ? fmt::format("for rank {}", n - 1) : "the check's abort") !=
                     std::string::npos;
    }
    expect(ok && last < (timeout ? 3 : 2.2),
           fmt::format("NcclGroup over {} GPUs, rank {} absent, {}: the waiting ranks' streams done by {:.3f} s, the "
                       "next collective throws GroupAborted naming it: '{}'",
                       n, n - 1, timeout ? "custom all-reduce timeout 0.5 s" : "abort() at 0.2 s", last, thrown[0]));
  }
}

}  // namespace peercheck
