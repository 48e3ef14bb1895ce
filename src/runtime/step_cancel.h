// Cancelling the engine's running step once nobody wants its result: every request in it has been
// aborted (client gone, /abort_request) or the engine is shutting down. The forward checks the flag
// between layers (model::ForwardBatch::cancel), so an abort or SIGTERM takes effect within one layer
// of a long prefill step instead of at its end.
#pragma once
#include <atomic>
#include <mutex>
#include <string>
#include <unordered_set>
#include <vector>

namespace ds::runtime {

class StepCancel {
 public:
  // Engine thread, around one forward: the ids of the step's requests. Clears the flag (unless the
  // engine is shutting down).
  void begin(std::vector<std::string> ids);
  void end();
  // Any thread: `id` is being aborted. When it was the last request of the running step not yet
  // aborted, the step is cancelled.
  void abort(const std::string& id);
  // Any thread: cancels the running step and every later one (shutdown).
  void cancel_all();
  const std::atomic<bool>* flag() const { return &flag_; }

  // begin() ... end() for one scope.
  class Scope {
   public:
    Scope(StepCancel& c, std::vector<std::string> ids) : c_(c) { c_.begin(std::move(ids)); }
    ~Scope() { c_.end(); }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    StepCancel& c_;
  };

 private:
  std::mutex mu_;
  std::unordered_set<std::string> wanted_;  // requests of the running step not aborted yet
  bool in_step_ = false, all_ = false;
  std::atomic<bool> flag_{false};
};

}  // namespace ds::runtime
