// The DeepSeek tokenizer: HF tokenizer.json byte-level BPE, exact to HF `tokenizers`.
//
// encode(): added tokens (specials such as <｜User｜>) written in the text are matched and become
// their ids, as HF does; callers that must not let user text produce specials have to escape or
// check it themselves. The text may hold invalid UTF-8: invalid bytes never match the
// pre-tokenizer regexes, so they are encoded as their byte tokens (nothing is replaced and
// nothing is lost; decode() then shows them as U+FFFD, as HF's lossy decode does).
//
// A Tokenizer is immutable after load and safe to use from many threads at once; copies share
// the loaded data.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ds::tok {

class Tokenizer {
 public:
  // path = a tokenizer.json file, or a directory holding tokenizer.json. tokenizer_config.json
  // next to it is read when present. Throws ds::Error with a clear message.
  static Tokenizer load(const std::string& path);
  // The same from the files' contents; config_json may be empty.
  static Tokenizer from_strings(std::string_view tokenizer_json, std::string_view config_json = {});

  std::vector<int32_t> encode(std::string_view text, bool add_bos = false) const;
  // Ids that are not defined are skipped (as HF does). Invalid UTF-8 from byte tokens -> U+FFFD.
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens = false) const;

  int32_t vocab_size() const;  // max id defined by tokenizer.json + 1
  std::optional<int32_t> token_to_id(std::string_view token) const;
  std::string id_to_token(int32_t id) const;  // raw vocab string ("Ġhello"); ds::Error if undefined
  bool is_special(int32_t id) const;
  bool is_added(int32_t id) const;  // an added token (special or not)
  // From tokenizer_config.json when present, else by DeepSeek's names; -1 if neither is found.
  int32_t bos_id() const;
  int32_t eos_id() const;
  bool add_bos_token() const;              // tokenizer_config.json add_bos_token (default false)
  const std::string& chat_template() const;  // tokenizer_config.json chat_template, "" if none

  struct Impl;

 private:
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
  friend class IncrementalDetokenizer;
};

// Streaming detokenizer: feed ids one by one; each call returns only complete UTF-8 text (bytes
// of a character split across tokens are held back). The concatenation of all push() results and
// flush() equals decode(all ids, skip_special_tokens).
class IncrementalDetokenizer {
 public:
  IncrementalDetokenizer(const Tokenizer& tok, bool skip_special_tokens);
  std::string push(int32_t id);
  std::string flush();

 private:
  std::shared_ptr<const Tokenizer::Impl> impl_;
  bool skip_special_;
  std::string pending_;  // an incomplete UTF-8 sequence at the end of the output so far
};

}  // namespace ds::tok
