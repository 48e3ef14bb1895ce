#include "dist/gloo_group.h"

#include <gloo/allgather.h>
#include <gloo/allreduce.h>
#include <gloo/broadcast.h>
#include <gloo/math.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/prefix_store.h>
#include <gloo/rendezvous/store.h>
#include <gloo/transport/tcp/device.h>

#include <cstring>
#include <mutex>

#include "util/error.h"
#include "util/timer.h"

namespace ds::dist {

namespace {

// Gloo's rendezvous through the control channel's store.
class StoreAdapter final : public gloo::rendezvous::Store {
 public:
  explicit StoreAdapter(dist::Store& s) : s_(s) {}
  void set(const std::string& key, const std::vector<char>& data) override {
    s_.set(key, std::string(data.begin(), data.end()));
  }
  std::vector<char> get(const std::string& key) override {
    const std::string v = s_.get(key);
    return {v.begin(), v.end()};
  }
  void wait(const std::vector<std::string>& keys) override {
    for (const auto& k : keys) s_.get(k);
  }

 private:
  dist::Store& s_;
};

void check_host_f32(const Tensor& t, const char* what) {
  DS_CHECK(t.device() == Device::CPU && t.dtype() == DType::F32, "GlooGroup::{}: {} (F32 host tensors only)", what,
           t.describe());
}

class GlooGroup final : public Group {
 public:
  GlooGroup(std::shared_ptr<gloo::rendezvous::Context> ctx, std::shared_ptr<gloo::transport::Device> dev)
      : ctx_(std::move(ctx)), dev_(std::move(dev)) {}
  int rank() const override { return ctx_->rank; }
  int size() const override { return ctx_->size; }
  std::string name() const override { return "gloo"; }

  // Ring all-reduce: each chunk is reduced once and passed on, so every rank gets the same bits.
  void all_reduce_sum(Tensor& t) override {
    check_host_f32(t, "all_reduce_sum");
    run([&] {
      gloo::AllreduceOptions o(ctx_);
      o.setOutput(t.f32(), size_t(t.numel()));
      o.setReduceFunction(static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<float>));
      o.setTag(tag_++);
      gloo::allreduce(o);
    });
  }
  void all_gather(const Tensor& in, Tensor& out) override {
    check_host_f32(in, "all_gather");
    check_host_f32(out, "all_gather");
    DS_CHECK(out.numel() == in.numel() * size(), "GlooGroup::all_gather: in {} and out {} do not match a group of {}",
             in.describe(), out.describe(), size());
    run([&] {
      gloo::AllgatherOptions o(ctx_);
      o.setInput(const_cast<float*>(in.f32()), size_t(in.numel()));
      o.setOutput(out.f32(), size_t(out.numel()));
      o.setTag(tag_++);
      gloo::allgather(o);
    });
  }
  // The all-reduce's chunk of this rank (twice a reduce-scatter's traffic; the CPU path is for tests).
  void reduce_scatter_sum(const Tensor& in, Tensor& out) override {
    check_host_f32(in, "reduce_scatter_sum");
    check_host_f32(out, "reduce_scatter_sum");
    DS_CHECK(in.numel() == out.numel() * size(), "GlooGroup::reduce_scatter_sum: in {} and out {} do not match {} ranks",
             in.describe(), out.describe(), size());
    Tensor sum = Tensor::empty(in.shape(), DType::F32);
    std::memcpy(sum.raw(), in.raw(), in.nbytes());
    all_reduce_sum(sum);
    std::memcpy(out.raw(), sum.f32() + out.numel() * rank(), out.nbytes());
  }
  void broadcast(Tensor& t, int root) override {
    check_host_f32(t, "broadcast");
    run([&] {
      gloo::BroadcastOptions o(ctx_);
      o.setOutput(t.f32(), size_t(t.numel()));
      o.setRoot(root);
      o.setTag(tag_++);
      gloo::broadcast(o);
    });
  }
  // Closing this rank's connections makes its peers' pending collectives fail, and they abort theirs.
  void abort(const std::string& why) override {
    std::lock_guard lk(mu_);
    if (aborted_) return;
    aborted_ = true;
    why_ = why;
    ctx_->closeConnections();
  }
  bool aborted() const override {
    std::lock_guard lk(mu_);
    return aborted_;
  }

 private:
  template <typename F>
  void run(F f) {
    {
      std::lock_guard lk(mu_);
      if (aborted_) throw GroupAborted(fmt::format("the parallel group was aborted: {}", why_));
    }
    Timer timer;
    try {
      f();
    } catch (const std::exception& e) {
      std::lock_guard lk(mu_);
      throw GroupAborted(aborted_ ? fmt::format("the parallel group was aborted: {}", why_)
                                  : fmt::format("a collective with another rank failed: {}", e.what()));
    }
    seconds_ += timer.seconds();
  }
  std::shared_ptr<gloo::rendezvous::Context> ctx_;
  std::shared_ptr<gloo::transport::Device> dev_;
  uint32_t tag_ = 0;
  mutable std::mutex mu_;
  bool aborted_ = false;
  std::string why_;
};

}  // namespace

std::unique_ptr<Group> make_gloo_group(Store& store, const std::string& name, int rank, int size,
                                       const std::string& host) {
  gloo::transport::tcp::attr attr;
  attr.hostname = host;
  auto dev = gloo::transport::tcp::CreateDevice(attr);
  auto ctx = std::make_shared<gloo::rendezvous::Context>(rank, size);
  StoreAdapter adapter(store);
  gloo::rendezvous::PrefixStore prefixed(name, adapter);
  try {
    ctx->connectFullMesh(prefixed, dev);
  } catch (const std::exception& e) {
    fail("Gloo group '{}' rank {} of {}: connecting failed: {}", name, rank, size, e.what());
  }
  return std::make_unique<GlooGroup>(std::move(ctx), std::move(dev));
}

bool have_gloo() { return true; }

}  // namespace ds::dist
