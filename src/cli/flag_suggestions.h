// "Did you mean" for unknown command-line flags: the known flags closest to what was typed.
#pragma once
#include <string>
#include <vector>

namespace ds::cli {

// Known flags within a small edit distance of `typed` (or sharing its stem), closest first, at most 3.
std::vector<std::string> close_flags(const std::string& typed, const std::vector<std::string>& known);

}  // namespace ds::cli
