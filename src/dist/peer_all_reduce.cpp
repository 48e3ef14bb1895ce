#include "dist/peer_all_reduce.h"

#include <fmt/format.h>

#include <algorithm>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "util/error.h"

namespace ds::dist {

using backend::cuda::kPeerMaxBlocks;
using backend::cuda::kPeerMaxBytes;
using backend::cuda::kPeerMaxRanks;

namespace {

// Sets the current device for a scope and puts the caller's back.
struct DeviceScope {
  DeviceScope() { cudaGetDevice(&saved); }
  ~DeviceScope() { cudaSetDevice(saved); }
  int saved = 0;
};

// Peer access from every device to every other; false (with why) where the hardware has none.
bool enable_peer_access(const std::vector<int>& devices, std::string* why) {
  for (int a : devices)
    for (int b : devices) {
      if (a == b) continue;
      int ok = 0;
      DS_CUDA_CHECK(cudaDeviceCanAccessPeer(&ok, a, b));
      if (!ok) {
        *why = fmt::format("GPU {} cannot access GPU {}'s memory (cudaDeviceCanAccessPeer)", a, b);
        return false;
      }
    }
  for (int a : devices)
    for (int b : devices) {
      if (a == b) continue;
      DS_CUDA_CHECK(cudaSetDevice(a));
      const cudaError_t e = cudaDeviceEnablePeerAccess(b, 0);
      if (e == cudaErrorPeerAccessAlreadyEnabled) cudaGetLastError();  // NCCL, or a group made before
      else DS_CUDA_CHECK(e);
    }
  return true;
}

}  // namespace

std::unique_ptr<PeerAllReduce> PeerAllReduce::make(const std::vector<backend::cuda::CudaBackend*>& ranks,
                                                   const PeerAllReduceOptions& o, std::string* why) {
  const int n = int(ranks.size());
  if (n > kPeerMaxRanks) {
    *why = fmt::format("{} ranks, the custom all-reduce takes at most {}", n, kPeerMaxRanks);
    return nullptr;
  }
  DS_CHECK(o.max_bytes <= kPeerMaxBytes, "custom all-reduce limit of {} bytes: at most {}", o.max_bytes,
           kPeerMaxBytes);
  DS_CHECK(o.timeout_s > 0, "custom all-reduce timeout of {} s", o.timeout_s);
  DeviceScope keep;
  std::vector<int> devices;
  for (auto* be : ranks) devices.push_back(be->device_index());
  std::sort(devices.begin(), devices.end());
  devices.erase(std::unique(devices.begin(), devices.end()), devices.end());
  if (!enable_peer_access(devices, why)) return nullptr;

  std::unique_ptr<PeerAllReduce> p(new PeerAllReduce);
  p->max_bytes_ = o.max_bytes;
  p->timeout_s_ = o.timeout_s;
  // Portable: pinned for every device's context; mapped: the kernels read and write it in place.
  DS_CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&p->host_words_), (1 + kPeerMaxRanks) * sizeof(uint32_t),
                              cudaHostAllocMapped | cudaHostAllocPortable));
  std::fill_n(p->host_words_, 1 + kPeerMaxRanks, 0u);
  for (auto* be : ranks) {
    RankBuffers& b = p->ranks_.emplace_back();
    b.device = be->device_index();
    DS_CUDA_CHECK(cudaSetDevice(b.device));
    DS_CUDA_CHECK(cudaMalloc(&b.data, 2 * kPeerMaxBytes));
    DS_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&b.flags), kPeerMaxBlocks * kPeerMaxRanks * sizeof(uint32_t)));
    DS_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&b.epochs), kPeerMaxBlocks * sizeof(uint32_t)));
    DS_CUDA_CHECK(cudaMemset(b.flags, 0, kPeerMaxBlocks * kPeerMaxRanks * sizeof(uint32_t)));
    DS_CUDA_CHECK(cudaMemset(b.epochs, 0, kPeerMaxBlocks * sizeof(uint32_t)));
    backend::cuda::preload_one_shot_all_reduce();
  }
  for (int r = 0; r < n; ++r) {
    backend::cuda::PeerArgs a{};
    for (int q = 0; q < n; ++q) {
      a.data[q] = p->ranks_[size_t(q)].data;
      a.flags[q] = p->ranks_[size_t(q)].flags;
    }
    a.epochs = p->ranks_[size_t(r)].epochs;
    DS_CUDA_CHECK(cudaSetDevice(p->ranks_[size_t(r)].device));
    uint32_t* words = nullptr;
    DS_CUDA_CHECK(cudaHostGetDevicePointer(reinterpret_cast<void**>(&words), p->host_words_, 0));
    a.abort = words;
    a.error = words + 1 + r;
    a.timeout_ns = static_cast<unsigned long long>(o.timeout_s * 1e9);
    a.rank = r;
    a.ranks = n;
    p->args_.push_back(a);
  }
  for (const auto& b : p->ranks_) {  // the zeroed flags before any rank's first kernel
    DS_CUDA_CHECK(cudaSetDevice(b.device));
    DS_CUDA_CHECK(cudaDeviceSynchronize());
  }
  return p;
}

PeerAllReduce::~PeerAllReduce() {
  // Nothing may spin on buffers being freed (collectives still in flight only when the group failed).
  if (host_words_) abort();
  DeviceScope keep;
  for (const auto& b : ranks_) {
    cudaSetDevice(b.device);
    cudaFree(b.data);
    cudaFree(b.flags);
    cudaFree(b.epochs);
  }
  if (host_words_) cudaFreeHost(host_words_);
}

bool PeerAllReduce::fits(const Tensor& t) const {
  return (t.dtype() == DType::F32 || t.dtype() == DType::BF16) && t.nbytes() <= max_bytes_;
}

void PeerAllReduce::run(Tensor& t, int rank, cudaStream_t st) const {
  DS_CHECK(fits(t) && rank >= 0 && rank < int(args_.size()), "custom all-reduce of {} on rank {} of {}",
           t.describe(), rank, args_.size());
  backend::cuda::launch_one_shot_all_reduce(t.raw(), t.nbytes(), t.dtype() == DType::BF16, args_[size_t(rank)], st);
  DS_CUDA_CHECK_LAUNCH();
}

void PeerAllReduce::abort() { static_cast<volatile uint32_t*>(host_words_)[0] = 1; }

std::string PeerAllReduce::failure() const {
  const volatile uint32_t* w = host_words_;
  for (size_t r = 0; r < args_.size(); ++r)
    if (const uint32_t missing = w[1 + r])
      return fmt::format("rank {} waited more than {} s for rank {} in a custom all-reduce", r, timeout_s_,
                         missing - 1);
  return {};
}

}  // namespace ds::dist
