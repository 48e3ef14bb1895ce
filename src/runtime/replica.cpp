#include "runtime/replica.h"

#include <algorithm>
#include <future>

#include "util/error.h"

namespace ds::runtime {

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

RankGroups make_rank_groups(const ParallelConfig& p, int first, int end, const GroupMaker& make) {
  const int world_n = p.world_size(), per_group = p.group_size(), n = end - first;
  RankGroups rg;
  rg.world.assign(size_t(n), nullptr);
  rg.local.assign(size_t(n), nullptr);
  auto add = [&](int group_first, int count, std::vector<dist::Group*>& into) {
    const int mb = std::max(group_first, first), me = std::min(group_first + count, end);
    if (count < 2 || mb >= me) return;  // a group of one rank has nobody to meet: no handle
    auto made = make(mb, me, group_first, count);
    DS_CHECK(int(made.size()) == me - mb, "{} process group handles for {} ranks", made.size(), me - mb);
    for (int k = 0; k < me - mb; ++k) {
      into[size_t(mb - first + k)] = made[size_t(k)].get();
      rg.owned.push_back(std::move(made[size_t(k)]));
    }
  };
  if (p.dp_attention) add(0, world_n, rg.world);
  for (int g = 0; g < world_n / per_group; ++g) add(g * per_group, per_group, rg.local);
  return rg;
}

Replica load_replica(const ReplicaSpec& spec) {
  const ParallelConfig& p = spec.parallel;
  p.validate();
  const int world_n = p.world_size(), per_group = p.group_size();
  const int b = spec.first_rank, n = spec.ranks > 0 ? spec.ranks : world_n - b, e = b + n;
  DS_CHECK(b >= 0 && n >= 1 && e <= world_n, "ranks [{}, {}) outside a world of {}", b, e, world_n);
  Replica rep;
  rep.group_size = per_group;
  rep.first_rank = b;
  for (int r = b; r < e; ++r) {
    rep.backends.push_back(spec.make_backend(r));
    rep.free_before.push_back(rep.backends.back()->free_device_memory());
  }
  // The groups: all ranks (DP attention's MoE exchange), and each DP group's own ranks (attention, or a
  // replica's tensor parallelism), over this process's backends. Indexed by the local rank (r - b).
  RankGroups rg = make_rank_groups(p, b, e, [&](int mb, int me, int group_first, int count) {
    std::vector<backend::Backend*> bes;
    for (int r = mb; r < me; ++r) bes.push_back(rep.backends[size_t(r - b)].get());
    return spec.make_groups(bes, mb, group_first, count);
  });
  rep.groups = std::move(rg.owned);
  const std::vector<dist::Group*>& world = rg.world;
  const std::vector<dist::Group*>& local = rg.local;

  rep.models.resize(size_t(n));
  std::vector<std::future<void>> loads;
  for (int i = 0; i < n; ++i)
    loads.push_back(std::async(std::launch::async, [&, i] {
      backend::Backend& be = *rep.backends[size_t(i)];
      be.make_current();
      // rank_layout reads the handles by global rank: hand it this process's, offset.
      std::vector<dist::Group*> w(size_t(world_n), nullptr), l(size_t(world_n), nullptr);
      w[size_t(b + i)] = world[size_t(i)];
      l[size_t(b + i)] = local[size_t(i)];
      const model::TensorParallel tp = rank_layout(p, b + i, w, l);
      rep.models[size_t(i)] = spec.random_weights
                                  ? model::Model::load_random(spec.model_path, be, spec.model_options, tp)
                                  : model::Model::load(spec.model_path, be, spec.model_options, tp);
    }));
  std::string first_error;
  for (int i = 0; i < n; ++i) try {
      loads[size_t(i)].get();
    } catch (const std::exception& ex) {
      if (first_error.empty()) first_error = world_n > 1 ? fmt::format("rank {}: {}", b + i, ex.what()) : ex.what();
    }
  if (!first_error.empty()) throw Error(first_error);
  return rep;
}

}  // namespace ds::runtime
