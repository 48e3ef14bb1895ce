// A step's inputs as bytes, for the ranks on other nodes (dist/control_channel.h): the batch (sequences,
// positions, page tables, logits modes, DP token counts) and its mode. Sampling state stays on node 0:
// the ranks that draw are all there, so the other nodes' ranks get empty sampling slots.
#pragma once
#include <string>

#include "runtime/model_runner.h"

namespace ds::runtime {

std::string encode_step(const StepInput& in);
// Throws ds::Error on bytes that are not an encoded step.
StepInput decode_step(const std::string& bytes);

}  // namespace ds::runtime
