// --kv-cache-dtype: SGLang's names resolved against a backend, and the KV plan sized from the bytes each
// choice takes per token (DeepSeek-V3.2's widths: 656 + 132 bytes per layer in FP8).
#include <gtest/gtest.h>

#include "backend/backend.h"
#include "model/kv_cache.h"
#include "model/make_model.h"
#include "runtime/kv_dtype.h"
#include "runtime/kv_plan.h"
#include "util/error.h"

using namespace ds;

TEST(KvCacheDtype, NamesResolveOnTheCpuBackend) {
  auto be = backend::make_cpu_backend(1);
  EXPECT_EQ(runtime::resolve_kv_cache_dtype("auto", *be), DType::F32);
  EXPECT_EQ(runtime::resolve_kv_cache_dtype("fp32", *be), DType::F32);
  EXPECT_EQ(runtime::resolve_kv_cache_dtype("float32", *be), DType::F32);
  EXPECT_EQ(runtime::resolve_kv_cache_dtype("fp8_e4m3", *be), DType::F8_E4M3);
  EXPECT_THROW(runtime::resolve_kv_cache_dtype("bf16", *be), ds::Error);  // the CPU keeps fp32 or FP8
  try {
    runtime::resolve_kv_cache_dtype("fp8_e5m2", *be);
    ADD_FAILURE() << "fp8_e5m2 accepted";
  } catch (const ds::Error& e) {
    EXPECT_NE(std::string(e.what()).find("fp8_e4m3"), std::string::npos) << e.what();
  }
  EXPECT_THROW(runtime::resolve_kv_cache_dtype("int8", *be), ds::Error);
  EXPECT_EQ(runtime::kv_cache_dtype_label(DType::F8_E4M3), "fp8_e4m3");
  EXPECT_EQ(runtime::kv_cache_dtype_label(DType::BF16), "bf16");
}

TEST(KvCacheDtype, BytesPerTokenAndThePlanFromThem) {
  model::MakeModelOptions o;
  o.preset = "full-width";
  const model::ModelConfig c = model::preset_config(o);
  ASSERT_EQ(c.kv_lora_rank, 512);
  ASSERT_EQ(c.index_head_dim, 128);
  const int64_t layers = c.num_hidden_layers;
  EXPECT_EQ(model::KVCache::bytes_per_token(c, DType::F8_E4M3, DType::F32, false), layers * (656 + 132));
  EXPECT_EQ(model::KVCache::bytes_per_token(c, DType::BF16, DType::F32, false), layers * (576 * 2 + 128 * 4));
  runtime::KvPlanInput in;
  in.mem_fraction = 0.5;
  in.available_bytes = int64_t(1) << 34;
  in.max_running_requests = 1 << 20;
  in.context_length = 1 << 20;
  in.page_size = 64;
  in.bytes_per_token = model::KVCache::bytes_per_token(c, DType::BF16, DType::F32, false);
  const int64_t bf16_tokens = runtime::plan_kv_pool(in).tokens;
  in.bytes_per_token = model::KVCache::bytes_per_token(c, DType::F8_E4M3, DType::F32, false);
  const int64_t fp8_tokens = runtime::plan_kv_pool(in).tokens;
  EXPECT_NEAR(double(fp8_tokens) / double(bf16_tokens), 1664.0 / 788.0, 0.01);
}

TEST(KvCacheDtype, Fp8PoolsAreU8RowsOfTheLayouts) {
  auto be = backend::make_cpu_backend(1);
  model::MakeModelOptions o;
  const model::ModelConfig c = model::preset_config(o);  // tiny: latent 64 + rope 16, indexer keys 32
  auto kv = model::KVCache::create(*be, c, 3, 4, false, DType::F8_E4M3);
  ASSERT_TRUE(kv.fp8());
  ASSERT_EQ(kv.latent.size(), size_t(c.num_hidden_layers));
  EXPECT_EQ(kv.latent[0].dtype(), DType::U8);
  EXPECT_EQ(kv.latent[0].dim(0), 12);
  EXPECT_EQ(kv.latent[0].dim(1), 64 + 4 + 2 * 16);
  EXPECT_EQ(kv.index_k[0].dim(1), 32 + 4);
}
