// Continuous-batching scheduler of one engine: which requests run in the next step and how many of
// their tokens, with KV pages from the pool and prefix reuse from the radix cache. Pure bookkeeping
// (no model, no threads), so its policies are unit-tested directly.
//
// Each step: (1) every decoding request gets its one token (a new page when it crosses a page
// boundary; when the pool is empty even after evicting cached prefixes, the most recently admitted
// requests are retracted: their KV is dropped, they go back to the front of the queue and are
// recomputed later — never lost); (2) requests part-way through a chunked prefill continue; (3)
// waiting requests are admitted while the prefill token budget, max_running_requests and the pool
// allow, prefix-matched in the radix cache first.
#pragma once
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runtime/engine.h"
#include "runtime/page_pool.h"
#include "runtime/radix_cache.h"
#include "runtime/request_state.h"

namespace ds::runtime {

class Scheduler {
 public:
  Scheduler(const EngineConfig& config, int32_t num_pages);
  ~Scheduler();

  struct Chunk {
    RequestState* req = nullptr;
    int32_t begin = 0;  // == req->computed
    int32_t len = 0;      // tokens run: from `begin`, and then the request's draft tokens
    bool logits = false;  // the chunk reaches the last known token: sample after it
    int32_t drafts = 0;   // speculative decoding: draft tokens verified after the last known one (of `len`)
  };

  void add(std::unique_ptr<RequestState> req);  // to the back of the queue
  // Takes a request out wherever it is, releasing its pages (no caching). nullptr if unknown.
  std::unique_ptr<RequestState> remove(const std::string& id);
  // Plans the next step. Empty when there is nothing to run.
  std::vector<Chunk> schedule();
  // After the forward of a chunk: its first `len` tokens are in the cache now (and, for a prompt chunk,
  // shared through the radix cache). A verify chunk counts the tokens the target confirmed (the last
  // known one + the accepted drafts), which the engine has appended to the request's tokens.
  void chunk_done(RequestState& req, int32_t len, bool share = true);
  // Pages for positions [0, upto_tokens) of a running request without retracting anyone (evicting cached
  // prefixes if needed): false when the pool cannot give them (speculative decoding then drafts nothing).
  bool reserve(RequestState& req, int32_t upto_tokens) { return grow(req, upto_tokens); }
  // A running request ended: its KV goes to the prefix cache, its pages are released.
  std::unique_ptr<RequestState> finish(RequestState& req);
  // Everything, for shutdown (pages released).
  std::vector<std::unique_ptr<RequestState>> take_all();
  // Drops the prefix cache; false while requests are running or queued.
  bool flush_cache();

  // Prefill/decode disaggregation, decode side (engine_pd.cpp). Fresh pages for a request's prompt, whose KV
  // comes from a prefill server (no prefix match); false when the pool cannot give them now. The request
  // stays outside the queue and the running batch meanwhile.
  bool reserve_prompt(RequestState& r);
  // Its prompt's KV is in its pages (r.computed set): it decodes from the next step on.
  void join_running(std::unique_ptr<RequestState> r) { running_.push_back(std::move(r)); }
  // Gives back the pages of a request that never joined.
  void drop_reserved(RequestState& r) { release(r, false); }

  int32_t num_running() const { return int32_t(running_.size()); }
  int32_t num_waiting() const { return int32_t(waiting_.size()); }
  const PagePool& pool() const { return pool_; }
  const RadixCache* cache() const { return cache_ ? cache_.get() : nullptr; }
  int64_t retractions() const { return retractions_; }
  // Tokens this many pages hold; the most one request may ever need is checked against it.
  int64_t capacity_tokens() const { return int64_t(pool_.num_pages()) * pool_.page_size(); }

 private:
  bool make_room(int32_t pages);                     // free pages >= pages, evicting cached prefixes if needed
  bool grow(RequestState& r, int32_t upto_tokens);   // pages covering upto_tokens positions
  int32_t fit(RequestState& r, int32_t want);         // the longest chunk <= want that pages allow (0: none)
  std::vector<Chunk> schedule_once();
  void retract(RequestState& r);
  void release(RequestState& r, bool to_cache);
  // Starts a waiting request at its cached prefix `m` (matched by the caller, which needed it already).
  bool admit(RequestState& r, const RadixCache::MatchResult& m, int32_t budget, int32_t reserve,
             std::vector<Chunk>& plan);
  bool defer_for_shared_prefix(const RequestState& r, int64_t matched) const;
  std::vector<RequestState*> admission_order();

  EngineConfig cfg_;
  PagePool pool_;
  std::unique_ptr<RadixCache> cache_;
  std::deque<std::unique_ptr<RequestState>> waiting_;
  std::vector<std::unique_ptr<RequestState>> running_;  // admission order
  int64_t retractions_ = 0;
};

}  // namespace ds::runtime
