#include "runtime/output_text.h"

#include <algorithm>
#include <utility>

namespace ds::runtime {

OutputText::OutputText(const tok::Tokenizer& tok, bool skip_special_tokens, std::vector<std::string> stop,
                       bool no_stop_trim)
    : detok_(tok, skip_special_tokens), stop_(std::move(stop)), no_stop_trim_(no_stop_trim) {
  std::erase_if(stop_, [](const std::string& s) { return s.empty(); });
  for (const auto& s : stop_) max_stop_len_ = std::max(max_stop_len_, s.size());
}

OutputText::Step OutputText::push(int32_t token) {
  held_ += detok_.push(token);
  return scan();
}

std::string OutputText::finish() {
  held_ += detok_.flush();
  Step s = scan();  // the flushed bytes may complete a stop string too
  if (!s.matched) s.text += std::exchange(held_, {});
  return s.text;
}

OutputText::Step OutputText::scan() {
  Step out;
  if (stop_.empty()) {
    out.text = std::exchange(held_, {});
    return out;
  }
  // The earliest match wins (what a client scanning the full text would see first).
  size_t best = std::string::npos;
  const std::string* best_stop = nullptr;
  for (const auto& s : stop_) {
    size_t at = held_.find(s);
    if (at != std::string::npos && (at < best || (at == best && s.size() > best_stop->size()))) {
      best = at;
      best_stop = &s;
    }
  }
  if (best_stop) {
    out.text = held_.substr(0, no_stop_trim_ ? best + best_stop->size() : best);
    out.matched = *best_stop;
    held_.clear();
    return out;
  }
  // Hold back the longest tail of the text that is a proper prefix of some stop string.
  size_t keep = 0;
  for (size_t n = std::min(held_.size(), max_stop_len_ - 1); n > 0 && keep == 0; --n) {
    std::string_view tail(held_.data() + held_.size() - n, n);
    for (const auto& s : stop_)
      if (s.size() > n && s.compare(0, n, tail) == 0) {
        keep = n;
        break;
      }
  }
  out.text = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

}  // namespace ds::runtime
