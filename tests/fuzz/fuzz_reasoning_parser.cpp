// libFuzzer: the deepseek-v3 reasoning parser fed in input-chosen chunks must give exactly
// the one-shot result, and reasoning + content must hold every byte (minus <think> tags).
#include "fuzz_chat_common.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, size_t size) {
  using namespace ds::chat;
  auto in = fuzz::split_input(data, size);
  OutputParserOptions opt;
  opt.starts_in_reasoning = in.flags & 1;
  ParsedMessage whole = parse_chat_output(in.text, opt);
  fuzz::check_same(whole, fuzz::streamed(opt, in));
  if (whole.reasoning_content.size() + whole.content.size() > in.text.size()) std::abort();
  if (!opt.starts_in_reasoning && in.text.rfind("<think>", 0) != 0 && whole.content != in.text) std::abort();
  return 0;
}
