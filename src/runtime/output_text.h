// The text side of one request's output: incremental detokenizing plus stop strings. Text that
// might be the start of a stop string is held back until the next tokens decide it, so a matched
// stop string is never emitted (unless no_stop_trim), as SGLang and OpenAI do.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace ds::runtime {

class OutputText {
 public:
  OutputText(const tok::Tokenizer& tok, bool skip_special_tokens, std::vector<std::string> stop, bool no_stop_trim);

  struct Step {
    std::string text;                       // safe to emit now
    std::optional<std::string> matched;     // the stop string that ended the output
  };
  // Appends one output token. After a match, the request must stop; later calls are not allowed.
  Step push(int32_t token);
  // The output ended for another reason: everything held back (and any incomplete UTF-8) is emitted.
  std::string finish();

 private:
  Step scan();

  tok::IncrementalDetokenizer detok_;
  std::vector<std::string> stop_;
  bool no_stop_trim_;
  size_t max_stop_len_ = 0;
  std::string held_;  // decoded text not emitted yet (a possible stop-string prefix)
};

}  // namespace ds::runtime
