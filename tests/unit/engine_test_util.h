// Shared by the engine tests (test_runtime_engine, test_spec_decode): a sink that gathers each request's
// outputs and waits for the last one, a greedy request, and deterministic prompts.
#pragma once
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "runtime/engine.h"

namespace ds::testing {

class Collector {
 public:
  explicit Collector(std::chrono::seconds wait_limit = std::chrono::seconds(60)) : limit_(wait_limit) {}
  runtime::OutputSink sink(const std::string& id) {
    return [this, id](runtime::RequestOutput&& o) {
      std::lock_guard lk(mu_);
      auto& r = results_[id];
      EXPECT_FALSE(r.finished) << id << ": output after the final one";
      r.tokens.insert(r.tokens.end(), o.token_ids.begin(), o.token_ids.end());
      r.text += o.text;
      r.logprobs.insert(r.logprobs.end(), o.logprobs.begin(), o.logprobs.end());
      r.deliveries++;
      r.last = o;
      if (o.finished) {
        r.finished = true;
        cv_.notify_all();
      }
    };
  }
  struct Result {
    std::vector<int32_t> tokens;
    std::string text;
    std::vector<runtime::TokenLogprob> logprobs;
    int deliveries = 0;
    bool finished = false;
    runtime::RequestOutput last;
  };
  Result wait(const std::string& id) {
    std::unique_lock lk(mu_);
    EXPECT_TRUE(cv_.wait_for(lk, limit_, [&] { return results_[id].finished; })) << id;
    return results_[id];
  }

 private:
  std::chrono::seconds limit_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, Result> results_;
};

// Greedy, EOS ignored: max_new tokens exactly.
inline runtime::GenerateRequest greedy(const std::string& id, std::vector<int32_t> prompt, int32_t max_new) {
  runtime::GenerateRequest r;
  r.id = id;
  r.prompt = std::move(prompt);
  r.max_new_tokens = max_new;
  r.sampling.temperature = 0;
  r.sampling.ignore_eos = true;
  return r;
}

// `len` token ids in [3, 503), different for every seed.
inline std::vector<int32_t> prompt_of(int seed, int len) {
  std::vector<int32_t> p;
  for (int i = 0; i < len; ++i) p.push_back(3 + (seed * 131 + i * 17) % 500);
  return p;
}

}  // namespace ds::testing
