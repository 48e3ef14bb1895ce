#include "runtime/forward_mode.h"

namespace ds::runtime {

const char* forward_mode_name(ForwardMode m) {
  switch (m) {
    case ForwardMode::Extend: return "extend";
    case ForwardMode::Decode: return "decode";
    case ForwardMode::Mixed: return "mixed";
    case ForwardMode::TargetVerify: return "target-verify";
    case ForwardMode::DraftExtend: return "draft-extend";
  }
  return "?";
}

ForwardMode classify_step(const model::ForwardBatch& batch) {
  if (uniform_tokens_per_seq(ForwardMode::TargetVerify, batch) > 1) return ForwardMode::TargetVerify;
  bool decode = false, extend = false;
  for (const auto& sc : batch.seqs) {
    const bool one = sc.tokens.size() == 1 && sc.logits == model::LogitsMode::Last;
    (one ? decode : extend) = true;
  }
  if (decode && extend) return ForwardMode::Mixed;
  return decode ? ForwardMode::Decode : ForwardMode::Extend;
}

bool verify_like_rows(const model::ForwardBatch& batch, int32_t q) {
  if (q < 2 || batch.seqs.empty()) return false;
  for (const auto& sc : batch.seqs) {
    const size_t n = sc.tokens.size();
    const bool all = sc.logits == model::LogitsMode::All && n >= 1 && n <= size_t(q);
    const bool one = sc.logits == model::LogitsMode::Last && n == 1;
    if (!all && !one) return false;
  }
  return true;
}

int32_t uniform_tokens_per_seq(ForwardMode mode, const model::ForwardBatch& batch) {
  if (batch.seqs.empty()) return 0;
  const size_t q = batch.seqs[0].tokens.size();
  // Decode: one token and its logits; verify: k tokens and the logits of every one of them.
  const model::LogitsMode want = mode == ForwardMode::Decode ? model::LogitsMode::Last : model::LogitsMode::All;
  if (mode != ForwardMode::Decode && mode != ForwardMode::TargetVerify) return 0;
  if (mode == ForwardMode::Decode && q != 1) return 0;
  for (const auto& sc : batch.seqs)
    if (sc.tokens.size() != q || sc.logits != want) return 0;
  return int32_t(q);
}

}  // namespace ds::runtime
