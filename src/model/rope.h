// RoPE frequencies with YaRN, computed the way transformers does (fp32 arithmetic in the same order),
// so positions far into the context rotate identically to the reference.
#pragma once
#include "backend/backend.h"
#include "model/config.h"

namespace ds::model {
backend::RopeTable make_rope_table(const ModelConfig& c);
}  // namespace ds::model
