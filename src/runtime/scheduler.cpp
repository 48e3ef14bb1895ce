#include "runtime/scheduler.h"

#include <algorithm>
#include <span>

namespace ds::runtime {

namespace {
int32_t prefill_budget(const EngineConfig& c) {
  return c.chunked_prefill_size > 0 ? std::min(c.chunked_prefill_size, c.max_prefill_tokens) : c.max_prefill_tokens;
}

int64_t common_prefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b, size_t limit) {
  size_t n = std::min({a.size(), b.size(), limit});
  return int64_t(std::mismatch(a.begin(), a.begin() + n, b.begin()).first - a.begin());
}
}  // namespace

Scheduler::Scheduler(const EngineConfig& config, int32_t num_pages)
    : cfg_(config), pool_(num_pages, config.page_size) {
  if (cfg_.enable_radix_cache) cache_ = std::make_unique<RadixCache>(pool_);
}

Scheduler::~Scheduler() { take_all(); }

void Scheduler::add(std::unique_ptr<RequestState> req) { waiting_.push_back(std::move(req)); }

std::unique_ptr<RequestState> Scheduler::remove(const std::string& id) {
  for (auto it = waiting_.begin(); it != waiting_.end(); ++it)
    if ((*it)->in.id == id) {
      auto r = std::move(*it);
      waiting_.erase(it);
      release(*r, true);
      return r;
    }
  for (auto it = running_.begin(); it != running_.end(); ++it)
    if ((*it)->in.id == id) {
      auto r = std::move(*it);
      running_.erase(it);
      release(*r, true);
      return r;
    }
  return nullptr;
}

bool Scheduler::make_room(int32_t pages) {
  while (pool_.num_free() < pages) {
    if (!cache_ || cache_->evict(pages - pool_.num_free()).empty()) return false;
  }
  return true;
}

bool Scheduler::grow(RequestState& r, int32_t upto_tokens) {
  const int32_t need = pool_.pages_for(upto_tokens) - int32_t(r.pages.size());
  if (need <= 0) return true;
  if (!make_room(need)) return false;
  auto fresh = pool_.allocate(need);
  r.pages.insert(r.pages.end(), fresh->begin(), fresh->end());
  return true;
}

void Scheduler::release(RequestState& r, bool to_cache) {
  // Keep what was computed: a later request with the same prefix (or this one, resumed) reuses it.
  if (cache_ && to_cache && r.computed > 0)
    cache_->insert(std::span<const int32_t>(r.tokens).first(size_t(r.computed)), r.pages);
  if (cache_ && r.locked) cache_->unlock(r.locked);
  r.locked = nullptr;
  pool_.release(r.pages);
  r.pages.clear();
  r.computed = 0;
  r.draft.clear();  // unverified proposals die with the request's KV (the cache above saw only `tokens`)
}

void Scheduler::retract(RequestState& r) {
  auto it = std::find_if(running_.begin(), running_.end(), [&](const auto& p) { return p.get() == &r; });
  auto owned = std::move(*it);
  running_.erase(it);
  release(r, true);
  ++r.retractions;
  ++retractions_;
  waiting_.push_front(std::move(owned));  // first in line to resume
}

std::unique_ptr<RequestState> Scheduler::finish(RequestState& r) {
  auto it = std::find_if(running_.begin(), running_.end(), [&](const auto& p) { return p.get() == &r; });
  auto owned = std::move(*it);
  running_.erase(it);
  release(r, true);
  return owned;
}

std::vector<std::unique_ptr<RequestState>> Scheduler::take_all() {
  std::vector<std::unique_ptr<RequestState>> all;
  for (auto& r : running_) {
    release(*r, false);
    all.push_back(std::move(r));
  }
  for (auto& r : waiting_) {
    release(*r, false);
    all.push_back(std::move(r));
  }
  running_.clear();
  waiting_.clear();
  return all;
}

bool Scheduler::reserve_prompt(RequestState& r) {
  if (!r.pages.empty()) return true;
  const int32_t need = pool_.pages_for(r.prompt_len);
  if (!make_room(need)) return false;
  auto fresh = pool_.allocate(need);
  r.pages.assign(fresh->begin(), fresh->end());
  return true;
}

bool Scheduler::flush_cache() {
  if (!running_.empty() || !waiting_.empty()) return false;
  if (cache_) cache_->reset();
  return true;
}

void Scheduler::chunk_done(RequestState& r, int32_t len, bool share) {
  r.computed += len;
  // Share a finished prefill chunk at once (SGLang's cache_unfinished_req): requests with the same
  // prefix admitted from the next step on reuse it. Pages that another request cached first are
  // swapped for the cached copy, so only one copy stays resident.
  if (!cache_ || len <= 1 || !share) return;
  auto res = cache_->insert(std::span<const int32_t>(r.tokens).first(size_t(r.computed)), r.pages);
  for (size_t i = 0; i < res.pages.size(); ++i)
    if (r.pages[i] != res.pages[i]) {
      pool_.retain(res.pages[i]);
      pool_.release(r.pages[i]);
      r.pages[i] = res.pages[i];
    }
  cache_->lock(res.node);
  if (r.locked) cache_->unlock(r.locked);
  r.locked = res.node;
}

bool Scheduler::defer_for_shared_prefix(const RequestState& r, int64_t matched) const {
  // A request still prefilling has a prompt prefix this one shares beyond what is cached: wait one
  // step and reuse its pages instead of computing the same prefix twice (e.g. n > 1, or a burst of
  // requests with one system prompt).
  for (const auto& p : running_) {
    if (!p->prefilling()) continue;
    if (common_prefix(r.tokens, p->tokens, r.tokens.size() - 1) >= matched + cfg_.page_size) return true;
  }
  return false;
}

std::vector<RequestState*> Scheduler::admission_order() {
  std::vector<RequestState*> order;
  for (auto& r : waiting_) order.push_back(r.get());
  // lpm: longest cached prefix first (as SGLang, only while the queue is short enough to match all).
  if (cfg_.schedule_policy == SchedulePolicy::Lpm && cache_ && order.size() <= 128) {
    std::vector<std::pair<int64_t, RequestState*>> keyed;
    for (auto* r : order)
      keyed.emplace_back(cache_->match_prefix(std::span<const int32_t>(r->tokens).first(r->tokens.size() - 1)).num_tokens, r);
    std::stable_sort(keyed.begin(), keyed.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    for (size_t i = 0; i < order.size(); ++i) order[i] = keyed[i].second;
  }
  return order;
}

bool Scheduler::admit(RequestState& r, const RadixCache::MatchResult& m, int32_t budget, int32_t reserve,
                      std::vector<Chunk>& plan) {
  const int32_t matched = int32_t(m.num_tokens);
  const int32_t len = std::min(int32_t(r.tokens.size()) - matched, budget);
  const int32_t need = pool_.pages_for(matched + len) - int32_t(m.pages.size());
  if (cache_) cache_->lock(m.node);  // before evicting: the match itself must stay
  if (!make_room(need + reserve)) {
    if (cache_) cache_->unlock(m.node);
    return false;
  }
  pool_.retain(m.pages);
  r.pages = m.pages;
  auto fresh = pool_.allocate(need);
  r.pages.insert(r.pages.end(), fresh->begin(), fresh->end());
  r.locked = cache_ ? m.node : nullptr;
  r.computed = matched;
  if (!r.admitted_once) {
    r.cached_tokens = matched;
    r.admitted_once = true;
  }
  const bool ends = matched + len == int32_t(r.tokens.size());
  plan.push_back({&r, matched, len, ends && !(r.output_len() == 0 && r.in.max_new_tokens == 0)});
  return true;
}

std::vector<Scheduler::Chunk> Scheduler::schedule() {
  // Running requests that all wait for pages (prefills that cannot grow, nothing decoding) would
  // stall forever: retract from the back until someone can run. One request alone always fits
  // (submit checks it), so this ends.
  for (;;) {
    auto plan = schedule_once();
    if (!plan.empty() || running_.empty()) return plan;
    retract(*running_.back());
  }
}

int32_t Scheduler::fit(RequestState& r, int32_t want) {
  if (grow(r, r.computed + want)) return want;
  // make_room evicted what it could: take the pages that are free now.
  const int64_t room = (int64_t(r.pages.size()) + pool_.num_free()) * pool_.page_size() - r.computed;
  const int32_t len = int32_t(std::min<int64_t>(want, room));
  return len >= 1 && grow(r, r.computed + len) ? len : 0;
}

std::vector<Scheduler::Chunk> Scheduler::schedule_once() {
  std::vector<Chunk> plan;
  // 1. Decodes: one token each (and its draft tokens to verify, under speculative decoding); retract from
  // the back when the pool cannot give a page (drafts are dropped first).
  for (size_t i = 0; i < running_.size(); ++i) {
    RequestState& r = *running_[i];
    if (r.remaining() != 1) continue;
    bool ok = grow(r, r.computed + 1 + int32_t(r.draft.size()));
    if (!ok && !r.draft.empty()) {
      r.draft.clear();
      ok = grow(r, r.computed + 1);
    }
    while (!ok && running_.back().get() != &r) {
      retract(*running_.back());
      ok = grow(r, r.computed + 1);
    }
    if (!ok) {  // r is the last one: it waits for the others to finish
      retract(r);
      break;
    }
    const int32_t drafts = int32_t(r.draft.size());
    plan.push_back({&r, r.computed, 1 + drafts, true, drafts});
  }
  // 2. Prefills already under way, then 3. new (or retracted) requests, within the token budget.
  int32_t budget = prefill_budget(cfg_);
  for (auto& p : running_) {
    RequestState& r = *p;
    if (r.remaining() <= 1 || budget <= 0) continue;
    const int32_t len = fit(r, std::min(r.remaining(), budget));  // a shorter chunk when pages are short
    if (len == 0) continue;
    const bool ends = len == r.remaining();
    plan.push_back({&r, r.computed, len, ends && !(r.output_len() == 0 && r.in.max_new_tokens == 0)});
    budget -= len;
  }
  for (RequestState* r : admission_order()) {
    if (budget <= 0 || int32_t(running_.size()) >= cfg_.max_running_requests) break;
    RadixCache::MatchResult m;
    if (cache_) m = cache_->match_prefix(std::span<const int32_t>(r->tokens).first(r->tokens.size() - 1));
    if (defer_for_shared_prefix(*r, m.num_tokens)) continue;
    // Room for every running request's next decode page stays free, so admission does not force retraction.
    if (!admit(*r, m, budget, int32_t(running_.size()), plan)) break;
    budget -= plan.back().len;
    // Move it to running now, so the next candidate sees it as prefilling (shared-prefix deferral).
    auto it = std::find_if(waiting_.begin(), waiting_.end(), [&](const auto& w) { return w.get() == r; });
    running_.push_back(std::move(*it));
    waiting_.erase(it);
  }
  return plan;
}

}  // namespace ds::runtime
