// A small pool of threads that sleep while idle, for short parallel loops beside a device: the engine's
// grammar masks of a step. OpenMP's threads (libgomp) spin for a while after each parallel region by
// default, and its wait policy can only be set before the process starts; spinning threads took the cores
// the engine, HTTP and streaming threads needed right after the masks (a CUDA server's step at batch 64
// grew by ~0.8 ms, measured with /metrics' step phases).
#pragma once
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace ds {

class WorkerPool {
 public:
  // `threads` workers besides the caller (0: hardware threads - 1, at most 15); started on first use.
  explicit WorkerPool(size_t threads = 0);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Runs f(0) .. f(n - 1), on the calling thread and the workers, and returns when all are done. f must
  // not throw (catch inside it). One loop at a time: calls from several threads take turns.
  void parallel_for(size_t n, const std::function<void(size_t)>& f);
  size_t workers() const { return want_; }

 private:
  void start();
  void work();
  void run_items();

  size_t want_;
  std::mutex call_mu_;  // one parallel_for at a time
  std::mutex mu_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> threads_;
  const std::function<void(size_t)>* f_ = nullptr;
  size_t n_ = 0, next_ = 0, finished_ = 0;
  size_t generation_ = 0;  // a new loop for the workers
  size_t busy_ = 0;        // workers inside the current loop
  bool stop_ = false;
};

}  // namespace ds
