#include "cli/flag_suggestions.h"

#include <algorithm>

namespace ds::cli {
namespace {

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string normalize(std::string s) {
  while (!s.empty() && s.front() == '-') s.erase(s.begin());
  for (char& c : s)
    if (c == '_') c = '-';
  return s;
}

}  // namespace

std::vector<std::string> close_flags(const std::string& typed, const std::vector<std::string>& known) {
  std::string t = normalize(typed.substr(0, typed.find('=')));
  std::vector<std::pair<size_t, std::string>> scored;
  for (const auto& k : known) {
    std::string n = normalize(k);
    size_t d = edit_distance(t, n);
    bool related = d <= std::max<size_t>(2, n.size() / 4) || (t.size() >= 4 && n.find(t) != std::string::npos) ||
                   (n.size() >= 4 && t.find(n) != std::string::npos);
    if (related) scored.emplace_back(d, k);
  }
  std::sort(scored.begin(), scored.end());
  std::vector<std::string> out;
  for (const auto& [d, k] : scored) {
    if (std::find(out.begin(), out.end(), k) == out.end()) out.push_back(k);
    if (out.size() == 3) break;
  }
  return out;
}

}  // namespace ds::cli
