// Loading refuses a checkpoint whose tensors do not match the model, naming the tensor and file,
// before converting anything.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <unistd.h>

#include "backend/backend.h"
#include "model/checkpoint.h"
#include "model/make_model.h"
#include "model/model.h"
#include "model/safetensors_writer.h"
#include "util/error.h"

using namespace ds;
using namespace ds::model;
namespace fs = std::filesystem;

namespace {
const std::string kSrc = std::string(DS_SOURCE_DIR) + "/tests/golden/tiny_v32_fp8";

// Copies the golden tiny checkpoint into `dir`, letting `edit` drop (return false) or change a spec.
void copy_checkpoint(const std::string& dir, const std::function<bool(TensorSpec&)>& edit) {
  Checkpoint src = Checkpoint::open(kSrc);
  std::vector<TensorSpec> plan;
  std::unordered_map<std::string, const TensorInfo*> from;
  for (const auto& n : src.names()) {
    const TensorInfo& t = src.get(n);
    TensorSpec s{n, t.dtype, t.shape};
    if (!edit(s)) continue;
    plan.push_back(s);
    from[n] = &t;
  }
  fs::create_directories(dir);
  fs::copy_file(kSrc + "/config.json", dir + "/config.json", fs::copy_options::overwrite_existing);
  write_sharded_checkpoint(dir, plan, [&](const TensorSpec& s, uint8_t* out, uint64_t n) {
    const TensorInfo& t = *from.at(s.name);
    std::memset(out, 0, n);
    std::memcpy(out, t.data, std::min<uint64_t>(n, t.nbytes));
  }, 1 << 20, false);
}

std::string load_error(const std::string& dir) {
  auto be = backend::make_cpu_backend(1);
  try {
    Model::load(dir, *be);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

class WeightValidation : public ::testing::Test {
 protected:
  std::string dir = ::testing::TempDir() + "dsserve_wv_" + std::to_string(::getpid()) + "_" +
                    ::testing::UnitTest::GetInstance()->current_test_info()->name();
  void TearDown() override { fs::remove_all(dir); }
};

TEST_F(WeightValidation, IntactCopyLoads) {
  copy_checkpoint(dir, [](TensorSpec&) { return true; });
  EXPECT_EQ(load_error(dir), "");
}

TEST_F(WeightValidation, MissingTensorIsNamed) {
  copy_checkpoint(dir, [](TensorSpec& s) { return s.name != "model.layers.1.mlp.experts.5.up_proj.weight"; });
  std::string e = load_error(dir);
  EXPECT_NE(e.find("missing 1 tensor"), std::string::npos) << e;
  EXPECT_NE(e.find("model.layers.1.mlp.experts.5.up_proj.weight"), std::string::npos) << e;
}

TEST_F(WeightValidation, MisShapedTensorNamesTensorAndFile) {
  copy_checkpoint(dir, [](TensorSpec& s) {
    if (s.name == "model.layers.0.self_attn.o_proj.weight") s.shape = {128, 120};
    return true;
  });
  std::string e = load_error(dir);
  EXPECT_NE(e.find("model.layers.0.self_attn.o_proj.weight"), std::string::npos) << e;
  EXPECT_NE(e.find("[128, 120]"), std::string::npos) << e;
  EXPECT_NE(e.find(".safetensors"), std::string::npos) << e;
}

TEST_F(WeightValidation, WrongDtypeIsRefused) {
  copy_checkpoint(dir, [](TensorSpec& s) {
    if (s.name == "model.norm.weight") s.dtype = DType::I32;
    return true;
  });
  std::string e = load_error(dir);
  EXPECT_NE(e.find("model.norm.weight"), std::string::npos) << e;
  EXPECT_NE(e.find("I32"), std::string::npos) << e;
}

TEST_F(WeightValidation, Fp8WithoutScaleOrWithBadScale) {
  copy_checkpoint(dir, [](TensorSpec& s) { return s.name != "model.layers.2.self_attn.q_b_proj.weight_scale_inv"; });
  std::string e = load_error(dir);
  EXPECT_NE(e.find("model.layers.2.self_attn.q_b_proj.weight_scale_inv"), std::string::npos) << e;
  fs::remove_all(dir);
  copy_checkpoint(dir, [](TensorSpec& s) {
    if (s.name == "model.layers.2.self_attn.kv_a_proj_with_mqa.weight_scale_inv") s.shape = {2, 2};
    return true;
  });
  e = load_error(dir);
  EXPECT_NE(e.find("kv_a_proj_with_mqa.weight_scale_inv"), std::string::npos) << e;
  EXPECT_NE(e.find("128x128"), std::string::npos) << e;
}

TEST_F(WeightValidation, MtpLayerIsOptionalButNotHalfPresent) {
  copy_checkpoint(dir, [](TensorSpec& s) { return s.name.rfind("model.layers.3.", 0) != 0; });
  EXPECT_EQ(load_error(dir), "");  // like a transformers-written checkpoint: no MTP, a warning
  fs::remove_all(dir);
  copy_checkpoint(dir, [](TensorSpec& s) { return s.name != "model.layers.3.eh_proj.weight"; });
  EXPECT_NE(load_error(dir).find("model.layers.3.eh_proj.weight"), std::string::npos);
}

}  // namespace
