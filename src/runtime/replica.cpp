#include "runtime/replica.h"

#include <future>

#include "util/error.h"

namespace ds::runtime {

Replica load_replica(const ReplicaSpec& spec) {
  const int n = spec.parallel.tp;
  DS_CHECK(spec.parallel.ep == 1 || spec.parallel.ep == n, "--ep {} with --tp {}: ep must be 1 or tp", spec.parallel.ep, n);
  Replica rep;
  for (int r = 0; r < n; ++r) {
    rep.backends.push_back(spec.make_backend(r));
    rep.free_before.push_back(rep.backends.back()->free_device_memory());
  }
  if (n > 1) {
    std::vector<backend::Backend*> bes;
    for (auto& b : rep.backends) bes.push_back(b.get());
    rep.groups = spec.make_groups(bes);
    DS_CHECK(int(rep.groups.size()) == n, "{} process group handles for {} ranks", rep.groups.size(), n);
  }
  rep.models.resize(size_t(n));
  std::vector<std::future<void>> loads;
  for (int r = 0; r < n; ++r)
    loads.push_back(std::async(std::launch::async, [&, r] {
      backend::Backend& be = *rep.backends[size_t(r)];
      be.make_current();
      model::TensorParallel tp{r, n, spec.parallel.ep > 1, n > 1 ? rep.groups[size_t(r)].get() : nullptr};
      rep.models[size_t(r)] = model::Model::load(spec.model_path, be, spec.model_options, tp);
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
