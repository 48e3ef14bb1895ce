// Tests with several CPU ranks (threads sharing LocalGroups): fn(rank) on every rank at once, each on its
// own thread. A rank that throws first calls abort(rank, why) (aborting its groups) so that the others
// cannot wait for it in a collective, then its exception reaches the caller.
#pragma once
#include <exception>
#include <future>
#include <string>
#include <vector>

namespace golden {

template <typename F, typename Abort>
auto on_ranks(int n, F fn, Abort abort) {
  using R = decltype(fn(0));
  std::vector<std::future<R>> f;
  for (int r = 0; r < n; ++r)
    f.push_back(std::async(std::launch::async, [&, r] {
      try {
        return fn(r);
      } catch (const std::exception& e) {
        abort(r, "rank " + std::to_string(r) + ": " + e.what());
        throw;
      }
    }));
  std::vector<R> out;
  for (auto& x : f) out.push_back(x.get());
  return out;
}

}  // namespace golden
