// The flattened layout of one forward call (private to model/).
#pragma once
#include <vector>

#include "backend/backend.h"
#include "model/model.h"

namespace ds::model {
struct Model::Step {
  backend::AttnBatch ab;
  std::vector<int32_t> ids;     // [T]
  std::vector<int32_t> slots;   // [T] pool rows written by this step
  std::vector<int32_t> token0;  // [S] first token of each sequence in the flattened batch
  std::vector<int32_t> ctx;     // [S] context length after this step
};
}  // namespace ds::model
