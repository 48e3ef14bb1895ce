// HF pre-tokenization for byte-level BPE: a Sequence of regex Splits, ending with ByteLevel.
// Pieces are byte ranges of the input; the byte -> unicode step of ByteLevel is folded into the
// BPE model (it works on bytes), so only ByteLevel's optional regex split happens here.
#pragma once
#include <nlohmann/json_fwd.hpp>

#include <string_view>
#include <utility>
#include <vector>

#include "tokenizer/regex.h"

namespace ds::tok {

using Range = std::pair<size_t, size_t>;  // [begin, end) byte offsets

enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

struct SplitStep {
  Regex re;
  SplitBehavior behavior;
  bool invert;
};

class PreTokenizer {
 public:
  // `j` is tokenizer.json's "pre_tokenizer". Supported: Split (Regex or String pattern, all five
  // behaviors, invert) and ByteLevel (add_prefix_space false), alone or in a Sequence with
  // ByteLevel last. Anything else throws ds::Error naming the type.
  static PreTokenizer from_json(const nlohmann::json& j);

  // Splits text (a piece between added tokens) into non-empty pieces, appended to `out` as ranges
  // offset by `base`.
  void split(std::string_view text, size_t base, std::vector<Range>& out) const;

 private:
  std::vector<SplitStep> steps_;
};

// One Split step applied to one piece; exposed for tests.
void apply_split(const SplitStep& step, std::string_view piece, size_t base, std::vector<Range>& out);

}  // namespace ds::tok
