// Shared by the speculative decoding tests (test_spec_decode*.cpp, one test executable): tiny checkpoints
// with a draft that agrees by construction, the engine and runner configs, run_all (a set of requests
// through an engine, speculating or not), and the SpecDecodeTest fixture (models loaded once per run; its
// statics are defined in test_spec_decode.cpp).
#pragma once
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "backend/backend.h"
#include "engine_test_util.h"
#include "model/make_model.h"
#include "model/model.h"
#include "runtime/engine.h"
#include "runtime/model_runner.h"

namespace ds::spec_test {

using namespace ds::runtime;

constexpr int32_t kSteps = 3;

using ds::testing::Collector;
using ds::testing::greedy;
using ds::testing::prompt_of;

// Tiny checkpoints made once per run: the golden one has a random MTP layer; the bigram ones a draft that
// agrees by construction (make_model's bigram_mtp) with main layers scaled by 0 (a bigram model) or 0.5.
inline std::string bigram_model_dir(float scale) {
  return (std::filesystem::temp_directory_path() /
          fmt::format("dsserve-spec-bigram-{}-{}", int(scale * 100), ::getpid()))
      .string();
}
inline std::string bigram_model(float scale) {
  const std::string dir = bigram_model_dir(scale);
  if (!std::filesystem::exists(dir + "/config.json")) {
    model::MakeModelOptions o;
    o.preset = "tiny";
    o.seed = 7;
    o.bigram_mtp = true;
    o.layer_output_scale = scale;
    model::make_model(o, dir);
  }
  return dir;
}

inline EngineConfig config(int64_t total_tokens = 1024, int32_t spec = kSteps) {
  EngineConfig c;
  c.page_size = 4;
  c.max_total_tokens = total_tokens;
  c.context_length = 160;
  c.eos_token_ids = {1};
  c.speculative_num_steps = spec;
  c.speculative_min_accept_length = 0;  // every request speculates to its end (the switch-off has its own test)
  return c;
}

inline RunnerConfig runner(int32_t spec = kSteps) {
  RunnerConfig rc;
  rc.draft_steps = spec;
  return rc;
}

struct Outputs {
  std::map<std::string, Collector::Result> by_id;
  EngineStats stats;
};

// Runs the requests through an engine (speculating or not), all submitted at once or staggered (later
// ones arrive while earlier ones decode: mixed prefill + verify steps).
inline Outputs run_all(const model::Model& m, const tok::Tokenizer& tok, const std::vector<GenerateRequest>& reqs,
                       bool spec, int64_t pool = 1024, bool staggered = false,
                       int32_t grammar_ahead = EngineConfig{}.grammar_ahead_min_requests) {
  EngineConfig cfg = config(pool, spec ? kSteps : 0);
  cfg.grammar_ahead_min_requests = grammar_ahead;
  auto e = make_engine(cfg, m, tok, runner(spec ? kSteps : 0));
  Collector c(std::chrono::seconds(120));
  for (size_t i = 0; i < reqs.size(); ++i) {
    e->submit(reqs[i], c.sink(reqs[i].id));
    if (staggered && i % 2 == 1) std::this_thread::sleep_for(std::chrono::milliseconds(15));
  }
  Outputs o;
  for (const auto& r : reqs) o.by_id[r.id] = c.wait(r.id);
  o.stats = e->stats();
  e->shutdown();
  return o;
}

class SpecDecodeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    be_ = backend::make_cpu_backend(0).release();
    golden_ = model::Model::load(DS_SOURCE_DIR "/tests/golden/tiny_v32_fp8", *be_).release();
    bigram_ = model::Model::load(bigram_model(0.0f), *be_).release();
    half_ = model::Model::load(bigram_model(0.5f), *be_).release();
    model::ModelOptions fp8_head;
    fp8_head.draft_head = model::DraftHead::Fp8;
    bigram_fp8_head_ = model::Model::load(bigram_model(0.0f), *be_, fp8_head).release();
  }
  static void TearDownTestSuite() {
    for (float scale : {0.0f, 0.5f}) std::filesystem::remove_all(bigram_model_dir(scale));
  }
  static backend::Backend* be_;
  static model::Model *golden_, *bigram_, *half_;
  static model::Model* bigram_fp8_head_;  // the bigram model drafting through an FP8 copy of its head
};

}  // namespace ds::spec_test
