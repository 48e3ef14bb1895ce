#include "cli/serve_replica.h"

#include <algorithm>
#include <future>
#include <thread>

#include "cli/make_backend.h"
#include "runtime/kv_plan.h"
#include "dist/local_group.h"
#include "util/error.h"
#ifdef DSSERVE_HAVE_CUDA
#include "dist/nccl_group.h"
#endif

namespace ds::cli {

int gpu_of_rank(const ReplicaFlags& f, int rank) { return f.base_gpu_id + rank * f.gpu_id_step; }

std::unique_ptr<backend::Backend> make_rank_backend(const ReplicaFlags& f, int rank, int ranks) {
  const int cores = f.threads > 0 ? f.threads : int(std::max(1u, std::thread::hardware_concurrency()));
  return make_backend(f.device, gpu_of_rank(f, rank), ranks == 1 ? f.threads : std::max(1, cores / ranks));
}

std::vector<std::unique_ptr<dist::Group>> make_rank_groups(const std::string& device,
                                                           const std::vector<backend::Backend*>& backends,
                                                           bool custom_all_reduce) {
  if (device == "cuda") {
#ifdef DSSERVE_HAVE_CUDA
    dist::NcclGroupOptions o;
    o.custom_all_reduce = custom_all_reduce;
    return dist::make_nccl_groups(backends, o);
#else
    fail("--device cuda: this dsserve was built without CUDA");
#endif
  }
  return dist::make_local_groups(int(backends.size()));
}

RankMemory replica_memory(const runtime::Replica& replica, const std::string& device) {
  RankMemory m;
  if (device != "cuda") {
    m.available = runtime::available_host_memory() / replica.size();
    return m;
  }
  m.available = INT64_MAX;
  for (int i = 0; i < replica.size(); ++i) {
    const int64_t before = replica.free_before[size_t(i)];
    m.available = std::min(m.available, before);
    m.reserved = std::max(m.reserved, before - replica.models[size_t(i)]->backend().free_device_memory());
  }
  return m;
}

RankRunners make_rank_runners(runtime::Replica& replica, runtime::RunnerConfig rc,
                              const runtime::ParallelConfig& parallel, const ReplicaFlags& f) {
  RankRunners out;
  out.groups.resize(size_t(parallel.world_size() / replica.group_size));
  for (int i = 0; i < replica.size(); ++i) {
    rc.parallel = parallel;
    rc.parallel.rank = replica.first_rank + i;
    rc.parallel.device_index = gpu_of_rank(f, i);
    out.owned.push_back(std::make_unique<runtime::ModelRunner>(rc, std::move(replica.backends[size_t(i)]),
                                                               std::move(replica.models[size_t(i)])));
    out.all.push_back(out.owned.back().get());
    out.groups[size_t(rc.parallel.rank / replica.group_size)].push_back(out.all.back());
  }
  return out;
}

void record_graphs_on_all(const std::vector<runtime::ModelRunner*>& runners, int32_t max_batch, int32_t max_context) {
  std::vector<std::future<int>> f;
  for (size_t r = 1; r < runners.size(); ++r)
    f.push_back(std::async(std::launch::async, [&, r] { return runners[r]->record_graphs(max_batch, max_context); }));
  runners[0]->record_graphs(max_batch, max_context);
  for (auto& x : f) x.get();
}

runtime::Replica load_serving_replica(const std::string& model_path, const runtime::ParallelConfig& parallel,
                                      const ReplicaFlags& f) {
  DS_CHECK(f.base_gpu_id >= 0 && f.gpu_id_step >= 1, "--base-gpu-id must be >= 0 and --gpu-id-step >= 1 (got {}, {})",
           f.base_gpu_id, f.gpu_id_step);
  const int n = parallel.world_size();
  runtime::ReplicaSpec spec;
  spec.model_path = model_path;
  spec.parallel = parallel;
  spec.model_options = f.model_options;
  spec.random_weights = f.random_weights;
  spec.make_backend = [&](int r) { return make_rank_backend(f, r, n); };
  spec.make_groups = [&](const std::vector<backend::Backend*>& bes, int, int, int) {
    return make_rank_groups(f.device, bes, f.custom_all_reduce);
  };
  return runtime::load_replica(spec);
}

}  // namespace ds::cli
