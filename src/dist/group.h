// A process group: the ranks that run one model replica's steps together and meet in collectives
// (TensorRT-LLM's and SGLang's TP group). The model calls these between its ops; each rank calls
// them in the same order with tensors of the same shape, on its own thread.
//
// Implementations: LocalGroup (ranks are threads of this process sharing host memory: the CPU
// backend, tests and CI), NcclGroup (CUDA: NCCL on the rank's stream; dist/nccl_group.h). Every
// collective leaves the same bits on every rank, so ranks that go on computing from the result stay
// identical (MoE routing on each rank must pick the same experts).
#pragma once
#include <stdexcept>
#include <string>

#include "tensor/tensor.h"

namespace ds::dist {

// Thrown out of a collective when the group was aborted (another rank failed), and by the rank that
// failed itself (origin: its message says what happened; the others' only that the group is gone).
struct GroupAborted : std::runtime_error {
  explicit GroupAborted(const std::string& why, bool origin = false) : std::runtime_error(why), origin(origin) {}
  bool origin = false;
};

class Group {
 public:
  virtual ~Group() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string name() const = 0;  // "local", "nccl"

  // Sum over ranks, in place (F32 or BF16).
  virtual void all_reduce_sum(Tensor& t) = 0;
  // out = the ranks' `in` one after the other in rank order (out.numel() == size() * in.numel()).
  virtual void all_gather(const Tensor& in, Tensor& out) = 0;
  // out = the sum over ranks of chunk rank() of `in` (in.numel() == size() * out.numel()): the
  // all-reduce's result, each rank keeping its own chunk (half the traffic; DP attention's MoE combine).
  virtual void reduce_scatter_sum(const Tensor& in, Tensor& out) = 0;
  // Every rank's `t` becomes root's.
  virtual void broadcast(Tensor& t, int root) = 0;
  // Ends every rank's current and later collectives with GroupAborted naming `why` (a rank failed:
  // the others must not wait for it forever).
  virtual void abort(const std::string& why) = 0;
  virtual bool aborted() const = 0;

  // Time this rank spent in collectives since the last reset (host wall time for LocalGroup; NCCL
  // calls are asynchronous and are counted by the benchmark's own timers).
  double seconds_in_collectives() const { return seconds_; }
  void reset_stats() { seconds_ = 0; }

 protected:
  double seconds_ = 0;
};

}  // namespace ds::dist
