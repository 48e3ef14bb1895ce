// Pieces of the DSML tool-call grammar (DeepSeek-V3.2), in the four spellings SGLang's
// deepseekv32 detector accepts: tags with or without the "｜DSML｜" marker, and invoke bodies
// made of <parameter> elements or holding one JSON object.
#pragma once
#include <string>
#include <string_view>

#include "chat/json_text.h"

namespace ds::chat::dsml {

enum class Match { Complete, NeedMore, NoMatch };

// Matches `<(｜DSML｜)?invoke\s+name="NAME"\s*>` at the start of `s`.
Match match_invoke_open(std::string_view s, size_t& length, std::string& name);

// Parses an invoke body into the arguments object. False if the body holds anything
// besides whitespace and well-formed parameters (or is not a JSON object body).
bool parse_invoke_body(std::string_view body, Json& arguments);

}  // namespace ds::chat::dsml
