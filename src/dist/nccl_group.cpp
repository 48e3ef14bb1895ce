#include "dist/nccl_group.h"

#include <fmt/format.h>
#include <nccl.h>

#include <cstring>
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
  // local: this rank's communicator in the world's list (the node's ranks); rank, size: in the group.
  NcclGroup(std::shared_ptr<NcclWorld> w, int local, int rank, int size, backend::cuda::CudaBackend& be)
      : w_(std::move(w)), local_(local), rank_(rank), size_(size), be_(be) {}
  int rank() const override { return rank_; }
  int size() const override { return size_; }
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
  ncclComm_t comm() const { return w_->comms[size_t(local_)]; }
  void ready(const Tensor& t) {
    DS_CHECK(t.device() == Device::CUDA, "NCCL collective on a host tensor ({})", t.describe());
    std::lock_guard lk(w_->m);
    if (w_->aborted) throw GroupAborted(fmt::format("the parallel group was aborted: {}", w_->why));
  }
  std::shared_ptr<NcclWorld> w_;
  const int local_, rank_, size_;
  backend::cuda::CudaBackend& be_;
};

}  // namespace

namespace {
std::vector<backend::cuda::CudaBackend*> cuda_backends(const std::vector<backend::Backend*>& backends) {
  std::vector<backend::cuda::CudaBackend*> cuda;
  for (auto* b : backends) {
    auto* c = dynamic_cast<backend::cuda::CudaBackend*>(b);
    DS_CHECK(c, "NCCL groups need CUDA backends, rank {} is on {}", cuda.size(), b->name());
    cuda.push_back(c);
  }
  return cuda;
}
}  // namespace

std::vector<std::unique_ptr<Group>> make_nccl_groups(const std::vector<backend::Backend*>& backends) {
  const int n = int(backends.size());
  auto cuda = cuda_backends(backends);
  std::vector<int> devices;
  for (auto* c : cuda) devices.push_back(c->device_index());
  auto world = std::make_shared<NcclWorld>();
  world->comms.resize(size_t(n));
  check(ncclCommInitAll(world->comms.data(), n, devices.data()), "communicator set-up (ncclCommInitAll)");
  std::vector<std::unique_ptr<Group>> out;
  for (int r = 0; r < n; ++r) out.push_back(std::make_unique<NcclGroup>(world, r, r, n, *cuda[size_t(r)]));
  return out;
}

std::string nccl_unique_id() {
  ncclUniqueId id;
  check(ncclGetUniqueId(&id), "unique id");
  return std::string(reinterpret_cast<const char*>(&id), sizeof id);
}

std::vector<std::unique_ptr<Group>> make_nccl_groups_across(const std::vector<backend::Backend*>& local,
                                                             int first_rank, int size, const std::string& unique_id) {
  DS_CHECK(unique_id.size() == sizeof(ncclUniqueId), "NCCL unique id of {} bytes, expected {}", unique_id.size(),
           sizeof(ncclUniqueId));
  ncclUniqueId id;
  std::memcpy(&id, unique_id.data(), sizeof id);
  auto cuda = cuda_backends(local);
  auto world = std::make_shared<NcclWorld>();
  world->comms.resize(local.size());
  // One thread initialises all of this node's ranks: inside a group call, as NCCL requires then.
  check(ncclGroupStart(), "group start");
  for (size_t i = 0; i < local.size(); ++i) {
    cuda[i]->make_current();
    check(ncclCommInitRank(&world->comms[i], size, id, first_rank + int(i)), "communicator set-up (ncclCommInitRank)");
  }
  check(ncclGroupEnd(), "communicator set-up across nodes (ncclGroupEnd)");
  std::vector<std::unique_ptr<Group>> out;
  for (size_t i = 0; i < local.size(); ++i)
    out.push_back(std::make_unique<NcclGroup>(world, int(i), first_rank + int(i), size, *cuda[i]));
  return out;
}

}  // namespace ds::dist
