#include "runtime/replica.h"

#include <future>

#include "util/error.h"

namespace ds::runtime {

namespace {
// How rank r's model is cut, over which groups (ReplicaSpec::parallel's layout).
model::TensorParallel rank_layout(const ParallelConfig& p, int r, const std::vector<dist::Group*>& world,
                                  const std::vector<dist::Group*>& local) {
  model::TensorParallel tp;
  if (p.dp_attention) {  // every rank in one MoE group; attention inside the rank's DP group
    tp.rank = r;
    tp.size = p.world_size();
    tp.group = world[size_t(r)];
    tp.dp = p.dp;
    tp.attn_group = local[size_t(r)];
    tp.dense_local = p.moe_dense_local;
  } else {  // replicas of tp ranks, each its own tensor-parallel group
    tp.rank = r % p.tp;
    tp.size = p.tp;
    tp.group = local[size_t(r)];
  }
  tp.expert_parallel = p.ep > 1;
  return tp;
}
}  // namespace

Replica load_replica(const ReplicaSpec& spec) {
  const ParallelConfig& p = spec.parallel;
  p.validate();
  const int n = p.world_size(), per_group = p.group_size();
  Replica rep;
  rep.group_size = per_group;
  for (int r = 0; r < n; ++r) {
    rep.backends.push_back(spec.make_backend(r));
    rep.free_before.push_back(rep.backends.back()->free_device_memory());
  }
  // The groups: all ranks (DP attention's MoE exchange), and each DP group's own ranks (attention, or a
  // replica's tensor parallelism). A group of one rank has no handle: it has nobody to meet.
  std::vector<dist::Group*> world(size_t(n), nullptr), local(size_t(n), nullptr);
  auto make = [&](int first, int count, std::vector<dist::Group*>& into) {
    if (count < 2) return;
    std::vector<backend::Backend*> bes;
    for (int r = first; r < first + count; ++r) bes.push_back(rep.backends[size_t(r)].get());
    auto made = spec.make_groups(bes);
    DS_CHECK(int(made.size()) == count, "{} process group handles for {} ranks", made.size(), count);
    for (int k = 0; k < count; ++k) {
      into[size_t(first + k)] = made[size_t(k)].get();
      rep.groups.push_back(std::move(made[size_t(k)]));
    }
  };
  if (p.dp_attention) make(0, n, world);
  for (int g = 0; g < n / per_group; ++g) make(g * per_group, per_group, local);

  rep.models.resize(size_t(n));
  std::vector<std::future<void>> loads;
  for (int r = 0; r < n; ++r)
    loads.push_back(std::async(std::launch::async, [&, r] {
      backend::Backend& be = *rep.backends[size_t(r)];
      be.make_current();
      rep.models[size_t(r)] = model::Model::load(spec.model_path, be, spec.model_options, rank_layout(p, r, world, local));
    }));
  std::string first_error;
  for (int r = 0; r < n; ++r) try {
      loads[size_t(r)].get();
    } catch (const std::exception& e) {
      if (first_error.empty()) first_error = n > 1 ? fmt::format("rank {}: {}", r, e.what()) : e.what();
    }
  if (!first_error.empty()) throw Error(first_error);
  return rep;
}

}  // namespace ds::runtime
