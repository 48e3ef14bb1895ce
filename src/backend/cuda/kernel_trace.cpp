// The diagnostic build's per-kernel critical-path table (kernel_trace.h). Not compiled into normal builds.
// One device per process: the buffer pointer is set on the device current at the first capture, and the
// launch list is process-wide (ranks capturing at once in one process would interleave their lists).
#ifdef DSSERVE_KERNEL_TRACE
#include "backend/cuda/kernel_trace.h"

#include <cxxabi.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace ds::backend::cuda {

namespace {
constexpr unsigned kCap = 1u << 16;  // entries per replay

struct Launch {
  std::string name;
  dim3 grid, block;
};
// One captured step: its launches in order, and per position the sums over replays.
struct StepTrace {
  int64_t tokens = 0;
  std::vector<Launch> launches;
  std::vector<std::string> names;  // per device entry (launches matched by shape)
  std::vector<double> cost_ns, wait_ns;
  int replays = 0, mismatched = 0;
  double span_ns = 0;
};

struct State {
  std::mutex mu;
  std::vector<void (*)(void*)> setters;
  KernelTraceBuf* dev = nullptr;
  bool capturing = false;
  std::vector<Launch> pending;
  std::vector<StepTrace> steps;
};
State& state() {
  static State* s = new State;  // never destroyed: the exit handler still reads it
  return *s;
}

std::string short_name(const void* kernel) {
  const char* raw = nullptr;
  if (cudaFuncGetName(&raw, kernel) != cudaSuccess || !raw) return "?";
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> d(abi::__cxa_demangle(raw, nullptr, nullptr, &status), std::free);
  std::string n = status == 0 && d ? d.get() : raw;
  // "void ds::backend::cuda::(anonymous namespace)::gemv_tc_kernel<0, 1, 2, 2, 18>(...)": name<args>.
  for (const char* p : {"void ", "ds::backend::cuda::", "(anonymous namespace)::"}) {
    for (size_t at; (at = n.find(p)) != std::string::npos;) n.erase(at, std::char_traits<char>::length(p));
  }
  const size_t paren = n.find('(');
  if (paren != std::string::npos) n.resize(paren);
  return n;
}

void write_table() {
  State& s = state();
  const char* path = std::getenv("DSSERVE_KERNEL_TRACE_OUT");
  if (!path) return;
  FILE* f = std::fopen(path, "w");
  if (!f) return;
  for (const StepTrace& t : s.steps) {
    if (t.replays == 0) continue;
    const double r = t.replays;
    std::fprintf(f, "# captured step of %lld tokens: %d replays (%d with a different kernel count), %zu kernels, "
                    "first wait to last wait %.1f us\n",
                 static_cast<long long>(t.tokens), t.replays, t.mismatched, t.names.size(), t.span_ns / r / 1e3);
    std::fprintf(f, "# cost: this kernel's wait end -> the next kernel's (us, mean); lead: how long block 0 sat "
                    "at its wait (scheduled early)\n");
    std::map<std::string, std::pair<double, int>> by_name;
    for (size_t i = 0; i < t.names.size(); ++i) {
      std::fprintf(f, "%4zu %9.2f %9.2f  %s\n", i, t.cost_ns[i] / r / 1e3, t.wait_ns[i] / r / 1e3, t.names[i].c_str());
      auto& e = by_name[t.names[i]];
      e.first += t.cost_ns[i] / r / 1e3;
      e.second += 1;
    }
    std::vector<std::pair<double, std::string>> sorted;
    for (const auto& [n, e] : by_name) sorted.push_back({e.first, n + " x" + std::to_string(e.second)});
    std::sort(sorted.rbegin(), sorted.rend());
    std::fprintf(f, "# by kernel: us per replay, launches\n");
    for (const auto& [us, n] : sorted) std::fprintf(f, "%10.2f  %s\n", us, n.c_str());
    std::fprintf(f, "\n");
  }
  std::fclose(f);
}
}  // namespace

bool kernel_trace_on() {
  static const bool on = std::getenv("DSSERVE_KERNEL_TRACE_OUT") != nullptr;
  return on;
}

int kernel_trace_register(void (*set)(void*)) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  s.setters.push_back(set);
  return int(s.setters.size());
}

void kernel_trace_note_launch(const void* kernel, dim3 grid, dim3 block) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  if (!s.capturing) return;
  s.pending.push_back({short_name(kernel), grid, block});
}

void kernel_trace_capture_begin() {
  if (!kernel_trace_on()) return;
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  if (!s.dev) {
    void* p = nullptr;
    if (cudaMalloc(&p, sizeof(KernelTraceBuf) + size_t(kCap) * sizeof(KernelTraceEntry)) != cudaSuccess) return;
    const KernelTraceBuf h{0, kCap, {0, 0}};
    cudaMemcpy(p, &h, sizeof h, cudaMemcpyHostToDevice);
    s.dev = static_cast<KernelTraceBuf*>(p);
    for (auto* set : s.setters) set(p);
    std::atexit(write_table);
  }
  s.pending.clear();
  s.capturing = true;
}

int kernel_trace_capture_end(int64_t tokens) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  if (!s.capturing) return -1;
  s.capturing = false;
  StepTrace t;
  t.tokens = tokens;
  t.launches = std::move(s.pending);
  s.steps.push_back(std::move(t));
  return int(s.steps.size()) - 1;
}

void kernel_trace_replay_begin(cudaStream_t st) {
  State& s = state();
  if (s.dev) cudaMemsetAsync(&s.dev->n, 0, sizeof(unsigned), st);
}

void kernel_trace_replay_end(int id, cudaStream_t st) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  if (!s.dev || id < 0 || size_t(id) >= s.steps.size()) return;
  cudaStreamSynchronize(st);
  unsigned n = 0;
  cudaMemcpy(&n, &s.dev->n, sizeof n, cudaMemcpyDeviceToHost);
  n = std::min(n, kCap);
  std::vector<KernelTraceEntry> e(n);
  cudaMemcpy(e.data(), reinterpret_cast<KernelTraceEntry*>(s.dev + 1), n * sizeof(KernelTraceEntry),
             cudaMemcpyDeviceToHost);
  StepTrace& t = s.steps[size_t(id)];
  if (t.replays == 0) {
    // Pair the device notes with the captured launches by shape; a kernel launched another way (<<< >>>)
    // that notes too is named by its shape.
    // Only a few launches may be skipped (kernels that never reach pdl_prologue, e.g. empty ones).
    constexpr size_t kLookahead = 4;
    size_t j = 0;
    for (const KernelTraceEntry& x : e) {
      size_t k = j;
      auto same = [&](const Launch& l) {
        return l.grid.x == x.grid_x && l.grid.y == x.grid_y && l.grid.z == x.grid_z &&
               l.block.x * l.block.y * l.block.z == x.block;
      };
      while (k < t.launches.size() && k < j + kLookahead && !same(t.launches[k])) ++k;
      if (k < t.launches.size() && same(t.launches[k])) {
        t.names.push_back(t.launches[k].name);
        j = k + 1;
      } else {
        t.names.push_back("(unnamed " + std::to_string(x.grid_x) + "x" + std::to_string(x.grid_y) + "x" +
                          std::to_string(x.grid_z) + " blocks of " + std::to_string(x.block) + ")");
      }
    }
    t.cost_ns.assign(n, 0.0);
    t.wait_ns.assign(n, 0.0);
  }
  if (n != t.names.size()) {
    ++t.mismatched;
    return;
  }
  for (unsigned i = 0; i < n; ++i) {
    if (i + 1 < n) t.cost_ns[i] += double(e[i + 1].waited) - double(e[i].waited);
    t.wait_ns[i] += double(e[i].waited) - double(e[i].start);
  }
  if (n > 0) t.span_ns += double(e[n - 1].waited) - double(e[0].waited);
  ++t.replays;
}

}  // namespace ds::backend::cuda
#endif
