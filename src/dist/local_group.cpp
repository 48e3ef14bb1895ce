#include "dist/local_group.h"

#include <fmt/format.h>

#include <condition_variable>
#include <cstring>
#include <mutex>

#include "tensor/dtype.h"
#include "util/error.h"
#include "util/timer.h"

namespace ds::dist {

// The rendezvous the ranks of one group share: a generation-counted barrier with abort, the buffers
// the ranks publish for the current collective, and a scratch result.
class LocalWorld {
 public:
  explicit LocalWorld(int n) : in_(size_t(n)), out_(size_t(n)), n_(n) {}
  int size() const { return n_; }

  void barrier() {
    std::unique_lock lk(m_);
    throw_if_aborted();
    const uint64_t gen = generation_;
    if (++arrived_ == n_) {
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
      return;
    }
    cv_.wait(lk, [&] { return generation_ != gen || aborted_; });
    throw_if_aborted();
  }
  void abort(const std::string& why) {
    std::lock_guard lk(m_);
    if (!aborted_) why_ = why;
    aborted_ = true;
    cv_.notify_all();
  }
  bool aborted() const {
    std::lock_guard lk(m_);
    return aborted_;
  }

  std::vector<const void*> in_;  // rank r's input of the current collective
  std::vector<void*> out_;       // rank r's output
  std::vector<char> scratch_;    // all_reduce's result (resized by rank 0 between barriers)

 private:
  void throw_if_aborted() const {
    if (aborted_) throw GroupAborted(fmt::format("the parallel group was aborted: {}", why_));
  }
  const int n_;
  mutable std::mutex m_;
  std::condition_variable cv_;
  int arrived_ = 0;
  uint64_t generation_ = 0;
  bool aborted_ = false;
  std::string why_;
};

namespace {

void check_host(const Tensor& t, const char* what) {
  DS_CHECK(t.device() == Device::CPU, "LocalGroup::{}: tensor on a device ({}); LocalGroup works on host memory",
           what, t.describe());
}

class LocalGroup final : public Group {
 public:
  LocalGroup(std::shared_ptr<LocalWorld> w, int rank) : w_(std::move(w)), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return w_->size(); }
  std::string name() const override { return "local"; }

  void all_reduce_sum(Tensor& t) override {
    check_host(t, "all_reduce_sum");
    DS_CHECK(t.dtype() == DType::F32, "LocalGroup::all_reduce_sum: {} (F32 only)", t.describe());
    Timer timer;
    const int n = size();
    const int64_t numel = t.numel();
    w_->in_[rank_] = t.raw();
    if (rank_ == 0) w_->scratch_.resize(size_t(numel) * sizeof(float));
    w_->barrier();  // every input published, scratch sized
    const int64_t c0 = numel * rank_ / n, c1 = numel * (rank_ + 1) / n;
    auto* sum = reinterpret_cast<float*>(w_->scratch_.data());
    for (int64_t i = c0; i < c1; ++i) {
      float s = static_cast<const float*>(w_->in_[0])[i];
      for (int r = 1; r < n; ++r) s += static_cast<const float*>(w_->in_[r])[i];
      sum[i] = s;
    }
    w_->barrier();  // every chunk reduced; inputs no longer read
    std::memcpy(t.raw(), sum, size_t(numel) * sizeof(float));
    w_->barrier();  // every rank has copied: scratch free for the next collective
    seconds_ += timer.seconds();
  }

  void all_gather(const Tensor& in, Tensor& out) override {
    check_host(in, "all_gather");
    check_host(out, "all_gather");
    DS_CHECK(in.dtype() == out.dtype() && out.numel() == in.numel() * size(),
             "LocalGroup::all_gather: in {} and out {} do not match a group of {}", in.describe(), out.describe(),
             size());
    Timer timer;
    w_->in_[rank_] = in.raw();
    w_->barrier();
    const size_t bytes = in.nbytes();
    for (int r = 0; r < size(); ++r) std::memcpy(static_cast<char*>(out.raw()) + bytes * r, w_->in_[r], bytes);
    w_->barrier();
    seconds_ += timer.seconds();
  }

  void reduce_scatter_sum(const Tensor& in, Tensor& out) override {
    check_host(in, "reduce_scatter_sum");
    check_host(out, "reduce_scatter_sum");
    DS_CHECK(in.dtype() == DType::F32 && out.dtype() == DType::F32 && in.numel() == out.numel() * size(),
             "LocalGroup::reduce_scatter_sum: in {} and out {} do not match a group of {} (F32 only)", in.describe(),
             out.describe(), size());
    Timer timer;
    w_->in_[rank_] = in.raw();
    w_->barrier();
    // The same order as all_reduce_sum (rank 0 first): the same bits as its chunk of the all-reduce.
    const int64_t n = out.numel(), c0 = n * rank_;
    auto* dst = static_cast<float*>(out.raw());
    for (int64_t i = 0; i < n; ++i) {
      float s = static_cast<const float*>(w_->in_[0])[c0 + i];
      for (int r = 1; r < size(); ++r) s += static_cast<const float*>(w_->in_[r])[c0 + i];
      dst[i] = s;
    }
    w_->barrier();  // inputs no longer read
    seconds_ += timer.seconds();
  }

  void broadcast(Tensor& t, int root) override {
    check_host(t, "broadcast");
    DS_CHECK(root >= 0 && root < size(), "LocalGroup::broadcast: root {} outside a group of {}", root, size());
    Timer timer;
    w_->in_[rank_] = t.raw();
    w_->barrier();
    if (rank_ != root) std::memcpy(t.raw(), w_->in_[root], t.nbytes());
    w_->barrier();
    seconds_ += timer.seconds();
  }

  void abort(const std::string& why) override { w_->abort(why); }
  bool aborted() const override { return w_->aborted(); }

 private:
  std::shared_ptr<LocalWorld> w_;
  const int rank_;
};

}  // namespace

std::vector<std::unique_ptr<Group>> make_local_groups(int size) {
  DS_CHECK(size >= 1, "a parallel group needs at least one rank, got {}", size);
  auto world = std::make_shared<LocalWorld>(size);
  std::vector<std::unique_ptr<Group>> groups;
  for (int r = 0; r < size; ++r) groups.push_back(std::make_unique<LocalGroup>(world, r));
  return groups;
}

}  // namespace ds::dist
