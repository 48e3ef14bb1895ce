#include "tokenizer/pre_tokenizer.h"

#include <nlohmann/json.hpp>

#include "util/error.h"

namespace ds::tok {
namespace {
using json = nlohmann::json;

// The regex HF's ByteLevel pre-tokenizer applies when use_regex is true (GPT-2's); it is part of
// the library, not of tokenizer.json.
constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

SplitBehavior parse_behavior(const json& j) {
  std::string b = j.is_string() ? j.get<std::string>() : "";
  if (b == "Removed") return SplitBehavior::Removed;
  if (b == "Isolated") return SplitBehavior::Isolated;
  if (b == "MergedWithPrevious") return SplitBehavior::MergedWithPrevious;
  if (b == "MergedWithNext") return SplitBehavior::MergedWithNext;
  if (b == "Contiguous") return SplitBehavior::Contiguous;
  fail("tokenizer.json: unsupported Split behavior {}", j.dump());
}

bool get_bool(const json& j, const char* key, bool dflt) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return dflt;
  DS_CHECK(it->is_boolean(), "tokenizer.json: pre_tokenizer field \"{}\" must be a boolean", key);
  return it->get<bool>();
}

SplitStep parse_split(const json& j, size_t index) {
  auto pat = j.find("pattern");
  DS_CHECK(pat != j.end() && pat->is_object(), "tokenizer.json: Split pre-tokenizer {} has no \"pattern\" object",
           index);
  bool literal;
  std::string text;
  if (pat->contains("Regex") && (*pat)["Regex"].is_string()) {
    literal = false;
    text = (*pat)["Regex"].get<std::string>();
  } else if (pat->contains("String") && (*pat)["String"].is_string()) {
    literal = true;
    text = (*pat)["String"].get<std::string>();
  } else {
    fail("tokenizer.json: Split pre-tokenizer {} pattern must be {{\"Regex\": ...}} or {{\"String\": ...}}, got {}",
         index, pat->dump());
  }
  DS_CHECK(j.contains("behavior"), "tokenizer.json: Split pre-tokenizer {} has no \"behavior\"", index);
  return SplitStep{Regex(text, literal, "Split pre-tokenizer " + std::to_string(index)),
                   parse_behavior(j["behavior"]), get_bool(j, "invert", false)};
}

std::string type_of(const json& j) {
  auto t = j.find("type");
  return t != j.end() && t->is_string() ? t->get<std::string>() : std::string("(no type)");
}
}  // namespace

PreTokenizer PreTokenizer::from_json(const json& j) {
  DS_CHECK(j.is_object(), "tokenizer.json: \"pre_tokenizer\" must be an object (byte-level BPE needs ByteLevel)");
  std::vector<json> items;
  if (type_of(j) == "Sequence") {
    auto seq = j.find("pretokenizers");
    DS_CHECK(seq != j.end() && seq->is_array(), "tokenizer.json: Sequence pre-tokenizer has no \"pretokenizers\" array");
    items.assign(seq->begin(), seq->end());
  } else {
    items.push_back(j);
  }
  PreTokenizer p;
  for (size_t i = 0; i < items.size(); ++i) {
    const json& it = items[i];
    std::string type = type_of(it);
    if (type == "Split") {
      p.steps_.push_back(parse_split(it, i));
    } else if (type == "ByteLevel") {
      DS_CHECK(i + 1 == items.size(), "tokenizer.json: ByteLevel must be the last pre-tokenizer (it is {} of {})",
               i + 1, items.size());
      DS_CHECK(!get_bool(it, "add_prefix_space", true),
               "tokenizer.json: ByteLevel pre-tokenizer with add_prefix_space=true is not supported");
      if (get_bool(it, "use_regex", true))
        p.steps_.push_back(SplitStep{Regex(kGpt2Pattern, false, "ByteLevel regex"), SplitBehavior::Isolated, false});
    } else {
      fail("tokenizer.json: unsupported pre-tokenizer type \"{}\" (supported: Sequence, Split, ByteLevel)", type);
    }
  }
  DS_CHECK(!items.empty() && type_of(items.back()) == "ByteLevel",
           "tokenizer.json: the pre-tokenizer must end with ByteLevel (only byte-level BPE is supported)");
  return p;
}

void apply_split(const SplitStep& step, std::string_view piece, size_t base, std::vector<Range>& out) {
  // HF's split: the piece as alternating (range, is_match) parts covering all of it ...
  thread_local std::vector<Range> found;
  thread_local std::vector<std::pair<Range, bool>> parts;
  found.clear();
  parts.clear();
  if (piece.empty()) return;
  step.re.find_all(piece, found);
  size_t prev = 0;
  for (const Range& m : found) {
    if (prev != m.first) parts.push_back({{prev, m.first}, false});
    parts.push_back({m, true});
    prev = m.second;
  }
  if (prev != piece.size()) parts.push_back({{prev, piece.size()}, false});
  if (step.invert)
    for (auto& p : parts) p.second = !p.second;

  // ... then merged or dropped by the behavior; empty ranges never become pieces.
  auto emit = [&](Range r) {
    if (r.first != r.second) out.emplace_back(base + r.first, base + r.second);
  };
  switch (step.behavior) {
    case SplitBehavior::Isolated:
      for (auto& p : parts) emit(p.first);
      break;
    case SplitBehavior::Removed:
      for (auto& p : parts)
        if (!p.second) emit(p.first);
      break;
    case SplitBehavior::Contiguous:
    case SplitBehavior::MergedWithPrevious: {
      std::vector<Range> acc;
      bool prev_match = false;
      for (auto& [r, is_match] : parts) {
        bool merge = step.behavior == SplitBehavior::Contiguous ? is_match == prev_match : is_match && !prev_match;
        if (merge && !acc.empty())
          acc.back().second = r.second;
        else
          acc.push_back(r);
        prev_match = is_match;
      }
      for (auto& r : acc) emit(r);
      break;
    }
    case SplitBehavior::MergedWithNext: {
      std::vector<Range> acc;  // built right to left
      bool prev_match = false;
      for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
        if (it->second && !prev_match && !acc.empty())
          acc.back().first = it->first.first;
        else
          acc.push_back(it->first);
        prev_match = it->second;
      }
      for (auto it = acc.rbegin(); it != acc.rend(); ++it) emit(*it);
      break;
    }
  }
}

void PreTokenizer::split(std::string_view text, size_t base, std::vector<Range>& out) const {
  thread_local std::vector<Range> cur, next;
  cur.assign(1, Range{0, text.size()});
  for (const SplitStep& step : steps_) {
    next.clear();
    for (const Range& r : cur) apply_split(step, text.substr(r.first, r.second - r.first), r.first, next);
    cur.swap(next);
  }
  for (const Range& r : cur)
    if (r.first != r.second) out.emplace_back(base + r.first, base + r.second);
}

}  // namespace ds::tok
