#include "dist/nccl_group.h"

#include <fmt/format.h>
#include <nccl.h>

#include <mutex>

#include "backend/cuda/cuda_backend.h"
#include "util/error.h"

namespace ds::dist {

namespace {

void check(ncclResult_t r, const char* what) {
  if (r != ncclSuccess && r != ncclInProgress) fail("NCCL {}: {}", what, ncclGetErrorString(r));
}

ncclDataType_t nccl_type(const Tensor& t) {
  switch (t.dtype()) {
    case DType::F32: return ncclFloat32;
    case DType::BF16: return ncclBfloat16;
    case DType::F16: return ncclFloat16;
    case DType::I32: return ncclInt32;
    default: fail("NCCL collective on a {} tensor", t.describe());
  }
}

// The communicators of all ranks: abort() must reach every one of them (a rank's thread may be
// blocked on a stream whose kernels wait for a peer that will never come).
struct NcclWorld {
  ~NcclWorld() {
    if (!aborted)
      for (ncclComm_t c : comms)
        if (c) ncclCommDestroy(c);
  }
  std::vector<ncclComm_t> comms;
  std::mutex m;
  bool aborted = false;
  std::string why;
};

class NcclGroup final : public Group {
 public:
  NcclGroup(std::shared_ptr<NcclWorld> w, int rank, backend::cuda::CudaBackend& be)
      : w_(std::move(w)), rank_(rank), be_(be) {}
  int rank() const override { return rank_; }
  int size() const override { return int(w_->comms.size()); }
  std::string name() const override { return "nccl"; }

  void all_reduce_sum(Tensor& t) override {
    ready(t);
    check(ncclAllReduce(t.raw(), t.raw(), size_t(t.numel()), nccl_type(t), ncclSum, comm(), be_.stream()),
          "all-reduce");
  }
  void all_gather(const Tensor& in, Tensor& out) override {
    ready(in);
    DS_CHECK(in.dtype() == out.dtype() && out.numel() == in.numel() * size(),
             "all_gather: in {} and out {} do not match a group of {}", in.describe(), out.describe(), size());
    check(ncclAllGather(in.raw(), out.raw(), size_t(in.numel()), nccl_type(in), comm(), be_.stream()), "all-gather");
  }
  void reduce_scatter_sum(const Tensor& in, Tensor& out) override {
    ready(in);
    DS_CHECK(in.dtype() == out.dtype() && in.numel() == out.numel() * size(),
             "reduce_scatter_sum: in {} and out {} do not match a group of {}", in.describe(), out.describe(), size());
    check(ncclReduceScatter(in.raw(), out.raw(), size_t(out.numel()), nccl_type(in), ncclSum, comm(), be_.stream()),
          "reduce-scatter");
  }
  void broadcast(Tensor& t, int root) override {
    ready(t);
    check(ncclBroadcast(t.raw(), t.raw(), size_t(t.numel()), nccl_type(t), root, comm(), be_.stream()), "broadcast");
  }
  void abort(const std::string& why) override {
    std::lock_guard lk(w_->m);
    if (w_->aborted) return;
    w_->aborted = true;
    w_->why = why;
    for (ncclComm_t c : w_->comms) ncclCommAbort(c);
  }
  bool aborted() const override {
    std::lock_guard lk(w_->m);
    return w_->aborted;
  }

 private:
  ncclComm_t comm() const { return w_->comms[size_t(rank_)]; }
  void ready(const Tensor& t) {
    DS_CHECK(t.device() == Device::CUDA, "NCCL collective on a host tensor ({})", t.describe());
    std::lock_guard lk(w_->m);
    if (w_->aborted) throw GroupAborted(fmt::format("the parallel group was aborted: {}", w_->why));
  }
  std::shared_ptr<NcclWorld> w_;
  const int rank_;
  backend::cuda::CudaBackend& be_;
};

}  // namespace

std::vector<std::unique_ptr<Group>> make_nccl_groups(const std::vector<backend::Backend*>& backends) {
  const int n = int(backends.size());
  std::vector<backend::cuda::CudaBackend*> cuda;
  std::vector<int> devices;
  for (auto* b : backends) {
    auto* c = dynamic_cast<backend::cuda::CudaBackend*>(b);
    DS_CHECK(c, "NCCL groups need CUDA backends, rank {} is on {}", cuda.size(), b->name());
    cuda.push_back(c);
    devices.push_back(c->device_index());
  }
  auto world = std::make_shared<NcclWorld>();
  world->comms.resize(size_t(n));
  check(ncclCommInitAll(world->comms.data(), n, devices.data()), "communicator set-up (ncclCommInitAll)");
  std::vector<std::unique_ptr<Group>> out;
  for (int r = 0; r < n; ++r) out.push_back(std::make_unique<NcclGroup>(world, r, *cuda[size_t(r)]));
  return out;
}

}  // namespace ds::dist
