#include "dist/nccl_group.h"

#include <fmt/format.h>
#include <nccl.h>

#include <cstdlib>
#include <cstring>
#include <mutex>

#include "backend/cuda/cuda_backend.h"
#include "dist/peer_all_reduce.h"
#include "util/error.h"
#include "util/log.h"

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
// blocked on a stream whose kernels wait for a peer that will never come). The same for the custom
// all-reduce's kernels, when the ranks have one.
struct NcclWorld {
  ~NcclWorld() {
    if (!aborted)
      for (ncclComm_t c : comms)
        if (c) ncclCommDestroy(c);
  }
  // Under m.
  void abort(const std::string& reason) {
    if (aborted) return;
    aborted = true;
    why = reason;
    if (peer) peer->abort();
    for (ncclComm_t c : comms) ncclCommAbort(c);
  }
  std::vector<ncclComm_t> comms;
  std::unique_ptr<PeerAllReduce> peer;  // small all-reduces, when every rank is in this process
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
    if (w_->peer && w_->peer->fits(t)) return w_->peer->run(t, local_, be_.stream());
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
    w_->abort(why);
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
    // A custom all-reduce kernel that timed out waiting for a peer has ended the others' waits already.
    if (w_->peer && !w_->aborted)
      if (std::string why = w_->peer->failure(); !why.empty()) w_->abort(why);
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

namespace {
// The custom all-reduce for these ranks, or null (NCCL for all); one log line says which and why.
std::unique_ptr<PeerAllReduce> make_peer_all_reduce(const std::vector<backend::cuda::CudaBackend*>& ranks,
                                                    const NcclGroupOptions& o) {
  PeerAllReduceOptions po;
  po.timeout_s = o.custom_all_reduce_timeout_s;
  po.max_bytes = o.custom_all_reduce_max_bytes;
  std::string why;
  if (const char* env = std::getenv("DSSERVE_CUSTOM_AR_MAX_BYTES")) {
    char* end = nullptr;
    const unsigned long long v = std::strtoull(env, &end, 10);
    DS_CHECK(*env && !*end && v <= backend::cuda::kPeerMaxBytes,
             "DSSERVE_CUSTOM_AR_MAX_BYTES={}: expected bytes from 0 (off) to {}", env, backend::cuda::kPeerMaxBytes);
    po.max_bytes = size_t(v);
  }
  std::unique_ptr<PeerAllReduce> p;
  if (!o.custom_all_reduce) why = "--disable-custom-all-reduce";
  else if (po.max_bytes == 0)
    why = "the custom all-reduce is off by default until its checks pass (docs/PERF.md, session 20); DSSERVE_CUSTOM_AR_MAX_BYTES=524288 turns it on";
  else if (ranks.size() < 2) why = "one rank";
  else p = PeerAllReduce::make(ranks, po, &why);
  if (p)
    spdlog::info("all-reduce over {} ranks: custom one-shot over peer memory up to {} KiB, NCCL above",
                 ranks.size(), double(po.max_bytes) / 1024);
  else
    spdlog::info("all-reduce over {} ranks: NCCL ({})", ranks.size(), why);
  return p;
}
}  // namespace

std::vector<std::unique_ptr<Group>> make_nccl_groups(const std::vector<backend::Backend*>& backends,
                                                     const NcclGroupOptions& o) {
  const int n = int(backends.size());
  auto cuda = cuda_backends(backends);
  std::vector<int> devices;
  for (auto* c : cuda) devices.push_back(c->device_index());
  auto world = std::make_shared<NcclWorld>();
  world->comms.resize(size_t(n));
  check(ncclCommInitAll(world->comms.data(), n, devices.data()), "communicator set-up (ncclCommInitAll)");
  world->peer = make_peer_all_reduce(cuda, o);
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
