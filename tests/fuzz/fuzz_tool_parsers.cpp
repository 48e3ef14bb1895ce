// libFuzzer: the deepseekv32 and deepseekv31 tool parsers (behind the reasoning parser)
// fed in input-chosen chunks must give exactly the one-shot result and never crash.
#include "fuzz_chat_common.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, size_t size) {
  using namespace ds::chat;
  auto in = fuzz::split_input(data, size);
  OutputParserOptions opt;
  opt.tool_parser = (in.flags & 1) ? "deepseekv31" : "deepseekv32";
  opt.reasoning_parser = in.flags & 2;
  opt.starts_in_reasoning = in.flags & 4;
  if (in.flags & 8) opt.tool_names = {"get_weather", "f"};
  ParsedMessage whole = parse_chat_output(in.text, opt);
  fuzz::check_same(whole, fuzz::streamed(opt, in));
  for (const auto& c : whole.tool_calls)
    if (c.name.empty() || c.id.empty()) std::abort();
  return 0;
}
