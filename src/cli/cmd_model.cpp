// Offline model commands: make-model, forward (logits to .npy), generate (greedy decoding).
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstdio>
#include <optional>
#include <sstream>

#include "backend/backend.h"
#include "cli/commands.h"
#include "cli/make_backend.h"
#include "model/make_model.h"
#include "model/model.h"
#include "runtime/model_runner.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/log.h"
#include "util/npy.h"
#include "util/timer.h"

namespace ds::cli {

namespace {
std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t used = 0;
    int64_t v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    DS_CHECK(used > 0 && used == item.size() && v >= 0 && v < (1ll << 31), "--token-ids: '{}' is not a token id",
             item);
    ids.push_back(int32_t(v));
  }
  DS_CHECK(!ids.empty(), "--token-ids is empty");
  return ids;
}

struct ModelFlags {
  std::string model_path, indexer = "fp32", attention = "absorbed", log_level = "info", device = "cpu",
      kv_cache_dtype = "fp32";
  int threads = 0, cuda_graph_max_bs = runtime::kDefaultCudaGraphMaxBs;
  void add(CLI::App* cmd) {
    cmd->add_option("--model-path,--model", model_path, "checkpoint directory (config.json + safetensors)")->required();
    cmd->add_option("--device", device, "backend: cpu (fp32 reference) or cuda (GPU 0; DSSERVE_CUDA_GEMM=fast|exact)")
        ->check(CLI::IsMember({"cpu", "cuda"}));
    cmd->add_option("--indexer", indexer, "indexer numerics: fp32 (transformers) or fp8 (DeepSeek's kernels)")
        ->check(CLI::IsMember({"fp32", "fp8"}));
    cmd->add_option("--attention", attention, "MLA form: absorbed (serving) or expanded (per-head K/V)")
        ->check(CLI::IsMember({"absorbed", "expanded"}));
    cmd->add_option("--kv-cache-dtype", kv_cache_dtype,
                    "KV cache: fp32 (default here), bf16 (cuda; the server's default there) or fp8_e4m3")
        ->check(CLI::IsMember({"fp32", "bf16", "fp8_e4m3"}));
    cmd->add_option("--threads", threads, "CPU threads (0: all cores)");
    cmd->add_option("--cuda-graph-max-bs", cuda_graph_max_bs, "cuda: decode steps up to this batch replay CUDA graphs (0: never)")
        ->check(CLI::Range(0, 4096));
    cmd->add_option("--log-level", log_level, "trace|debug|info|warning|error");
  }
  std::unique_ptr<backend::Backend> make_backend() const { return cli::make_backend(device, 0, threads); }
  model::ModelOptions options() const {
    model::ModelOptions o;
    o.indexer = model::indexer_mode_named(indexer);
    o.attention = attention == "expanded" ? model::AttentionForm::Expanded : model::AttentionForm::Absorbed;
    return o;
  }
  DType latent_dtype() const {
    return kv_cache_dtype == "bf16" ? DType::BF16 : kv_cache_dtype == "fp8_e4m3" ? DType::F8_E4M3 : DType::F32;
  }
};

// One sequence's page table over a private pool: pages 0..n-1.
model::SequenceChunk single_sequence(const std::vector<int32_t>& tokens, int32_t start, int32_t page_size,
                                     int32_t pages) {
  model::SequenceChunk sc;
  sc.tokens = tokens;
  sc.start_pos = start;
  for (int32_t p = 0; p < pages; ++p) sc.page_table.push_back(p);
  return sc;
}

}  // namespace

void register_model_commands(CLI::App& app) {
  {
    auto* cmd = app.add_subcommand("make-model", "write a random-weight checkpoint in DeepSeek's HF format");
    auto o = std::make_shared<model::MakeModelOptions>();
    auto out = std::make_shared<std::string>();
    auto dtype = std::make_shared<std::string>("fp8");
    auto overrides = std::make_shared<std::string>();
    cmd->add_option("--preset", o->preset, "tiny (tests), demo (embedded default), full-width (671B layer shapes)")
        ->check(CLI::IsMember({"tiny", "demo", "full-width"}));
    cmd->add_option("--num-layers", o->num_layers, "number of decoder layers (default: the preset's)");
    cmd->add_option("--out", *out, "output directory")->required();
    cmd->add_option("--seed", o->seed, "random seed");
    cmd->add_option("--dtype", *dtype, "fp8 (block-quantised like DeepSeek's release) or bf16")
        ->check(CLI::IsMember({"fp8", "bf16"}));
    cmd->add_option("--override", *overrides, "JSON object merged into config.json, e.g. '{\"index_topk\":8}'");
    cmd->add_flag("--config-only", o->config_only,
                  "config.json alone (no weights): serve it with --load-format dummy (random weights in memory)");
    cmd->add_flag("--bigram-mtp", o->bigram_mtp,
                  "an MTP layer that predicts from the next token alone what the main model would: speculative "
                  "decoding's drafts all accepted when --layer-output-scale is 0, fewer as it grows");
    cmd->add_option("--layer-output-scale", o->layer_output_scale,
                    "the main layers' o_proj and down_proj times this (0: a bigram model)")
        ->capture_default_str();
    cmd->add_option("--mtp-attention-scale", o->mtp_attention_scale,
                    "with --bigram-mtp: the MTP layer's attention output times this instead of 0 (its drafts then "
                    "read its own KV cache)")
        ->capture_default_str();
    cmd->callback([=] {
      init_logging("info");
      o->fp8 = *dtype == "fp8";
      if (!overrides->empty()) {
        try {
          o->overrides = nlohmann::json::parse(*overrides);
        } catch (const std::exception& e) {
          fail("--override is not valid JSON: {}", e.what());
        }
      }
      model::make_model(*o, *out);
    });
  }
  {
    auto* cmd = app.add_subcommand("forward", "logits of every position of a token sequence, as .npy");
    auto f = std::make_shared<ModelFlags>();
    auto ids = std::make_shared<std::string>();
    auto out = std::make_shared<std::string>();
    f->add(cmd);
    cmd->add_option("--token-ids", *ids, "comma-separated token ids")->required();
    auto decode_from = std::make_shared<int64_t>(0);
    cmd->add_option("--out", *out, "output .npy file: float32 [T, vocab]")->required();
    cmd->add_option("--decode-from", *decode_from,
                    "prefill the first P tokens in one chunk, then feed the rest one token per step (the decode "
                    "path: GEMV projections, decode attention); 0: every token in one chunk")
        ->check(CLI::NonNegativeNumber);
    cmd->callback([=] {
      init_logging(f->log_level);
      auto be = f->make_backend();
      auto m = model::Model::load(f->model_path, *be, f->options());
      auto tokens = parse_ids(*ids);
      const int64_t T = int64_t(tokens.size());
      DS_CHECK(*decode_from < T, "--decode-from {} leaves no token to decode of the {} given", *decode_from, T);
      const int32_t page_size = 64, pages = int32_t((tokens.size() + page_size - 1) / page_size);
      auto cache = m->make_cache(pages, page_size, f->latent_dtype());
      // One chunk [start, end) of the sequence; its logits rows go to `all` at row `start`.
      const int64_t vocab = m->config().vocab_size;
      std::vector<float> all(size_t(T * vocab));
      auto run = [&](int64_t start, int64_t end) {
        model::ForwardBatch fb;
        fb.seqs.push_back(single_sequence({tokens.begin() + start, tokens.begin() + end}, int32_t(start), page_size,
                                          pages));
        fb.seqs[0].logits = model::LogitsMode::All;
        auto res = m->forward(fb, cache);
        DS_CHECK(res.logits.dim(0) == end - start && res.logits.dim(1) == vocab, "forward: unexpected logits shape");
        std::copy_n(res.logits.f32(), size_t((end - start) * vocab), all.begin() + start * vocab);
      };
      Timer t;
      const int64_t first = *decode_from > 0 ? *decode_from : T;
      run(0, first);
      for (int64_t p = first; p < T; ++p) run(p, p + 1);
      spdlog::info("forward of {} tokens in {:.3f} s ({} decode steps)", T, t.seconds(), T - first);
      write_npy_f32(*out, all.data(), {T, vocab});
    });
  }
  {
    auto* cmd = app.add_subcommand("generate", "greedy decoding from a prompt or token ids (offline, no server)");
    auto f = std::make_shared<ModelFlags>();
    auto ids = std::make_shared<std::string>();
    auto prompt = std::make_shared<std::string>();
    auto tokenizer = std::make_shared<std::string>();
    auto max_new = std::make_shared<int>(32);
    auto batch = std::make_shared<int>(1);
    f->add(cmd);
    auto* src = cmd->add_option("--token-ids", *ids, "comma-separated prompt token ids");
    cmd->add_option("--prompt", *prompt, "prompt text (BOS added; needs a tokenizer)")->excludes(src);
    cmd->add_option("--tokenizer", *tokenizer, "tokenizer.json or its directory (default: the model directory)");
    cmd->add_option("--max-new-tokens", *max_new, "tokens to generate")->check(CLI::Range(1, 1 << 20));
    cmd->add_option("--batch", *batch, "decode this many copies of the prompt together (throughput)")
        ->check(CLI::Range(1, 4096));
    cmd->callback([=] {
      init_logging(f->log_level);
      DS_CHECK(!ids->empty() || !prompt->empty(), "give --prompt or --token-ids");
      auto be = f->make_backend();
      auto m = model::Model::load(f->model_path, *be, f->options());
      std::optional<tok::Tokenizer> tk;
      if (!prompt->empty() || !tokenizer->empty()) tk = tok::Tokenizer::load(tokenizer->empty() ? f->model_path : *tokenizer);
      std::vector<int32_t> tokens;
      if (!prompt->empty()) {
        if (m->config().bos_token_id >= 0) tokens.push_back(int32_t(m->config().bos_token_id));
        auto enc = tk->encode(*prompt, false);
        tokens.insert(tokens.end(), enc.begin(), enc.end());
      } else {
        tokens = parse_ids(*ids);
      }
      const int32_t page_size = 64, B = *batch;
      const int32_t pages = int32_t((tokens.size() + *max_new + page_size - 1) / page_size);
      // A runner as the server's: recorded decode steps (lazily: the first step of each shape), greedy
      // draws on the device where the backend samples.
      runtime::RunnerConfig rc;
      rc.num_pages = pages * B;
      rc.page_size = page_size;
      rc.kv_cache_dtype = f->latent_dtype();
      rc.cuda_graph_max_bs = f->cuda_graph_max_bs;
      rc.cuda_graph_lazy = true;
      runtime::ModelRunner runner(rc, *m);
      runtime::GreedySampling greedy;
      const auto& eos = m->config().eos_token_ids;
      std::optional<tok::IncrementalDetokenizer> detok;
      if (tk) detok.emplace(*tk, true);
      runtime::StepInput in;
      for (int32_t b = 0; b < B; ++b) {
        in.batch.seqs.push_back(single_sequence(tokens, 0, page_size, pages));
        for (auto& p : in.batch.seqs.back().page_table) p += b * pages;  // each copy its own pages
      }
      in.sample = greedy.slots(size_t(B));
      auto step = [&] {
        in.mode = runtime::classify_step(in.batch);
        runtime::StepOutput res = runner.run(in);
        for (const auto& why : res.tokens.failed) DS_CHECK(why.empty(), "generate: {}", why);
        return res;
      };
      std::vector<int32_t> out;  // the first sequence's tokens (all copies decode the same)
      Timer t;
      runtime::StepOutput res = step();
      double prefill_s = t.seconds();
      t.reset();
      int steps = 0;
      for (;;) {
        int32_t next = res.tokens.drawn[0].token;
        out.push_back(next);
        if (detok) std::fputs(detok->push(next).c_str(), stdout), std::fflush(stdout);
        if (int(out.size()) >= *max_new || std::find(eos.begin(), eos.end(), next) != eos.end()) break;
        for (int32_t b = 0; b < B; ++b) {
          auto& sc = in.batch.seqs[b];
          sc.start_pos += int32_t(sc.tokens.size());
          sc.tokens = {res.tokens.drawn[b].token};
        }
        res = step();
        ++steps;
      }
      double decode_s = t.seconds();
      if (detok) fmt::print("{}\n", detok->flush());
      else fmt::print("{}\n", fmt::join(out, ","));
      spdlog::info("batch {}: prefill {} tokens x {} in {:.3f} s ({:.1f} tok/s); decode {} steps in {:.3f} s "
                   "({:.1f} steps/s, {:.1f} tok/s)",
                   B, tokens.size(), B, prefill_s, B * tokens.size() / prefill_s, steps, decode_s,
                   steps ? steps / decode_s : 0.0, steps ? B * steps / decode_s : 0.0);
    });
  }
}

}  // namespace ds::cli
