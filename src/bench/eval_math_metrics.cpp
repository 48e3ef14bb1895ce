#include "bench/eval_math_metrics.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "bench/math_answer.h"
#include "util/error.h"

namespace ds::bench {

namespace {

// Majority vote over the answered samples; ties score the mean correctness of the tied answers.
double majority_score(const std::vector<MathSample>& samples) {
  std::map<std::string, std::pair<int, double>> votes;  // normalised answer -> (count, correct sum)
  for (const auto& s : samples) {
    if (!s.answer) continue;
    auto& v = votes[normalize_math_answer(*s.answer)];
    v.first++;
    v.second += s.correct ? 1.0 : 0.0;
  }
  int best = 0;
  for (const auto& [answer, v] : votes) best = std::max(best, v.first);
  double score = 0;
  int tied = 0;
  for (const auto& [answer, v] : votes)
    if (v.first == best) {
      score += v.second / v.first;
      ++tied;
    }
  return tied ? score / tied : 0.0;
}

// Python's str.center(width, fill), including where it puts an odd extra fill character.
std::string center(const std::string& s, size_t width, char fill) {
  if (s.size() >= width) return s;
  size_t marg = width - s.size();
  size_t left = marg / 2 + (marg & width & 1);
  return std::string(left, fill) + s + std::string(marg - left, fill);
}

}  // namespace

MathMetrics compute_math_metrics(const std::vector<std::vector<MathSample>>& samples, double gen_seconds) {
  DS_CHECK(!samples.empty(), "no problems to score");
  const size_t n = samples[0].size();
  DS_CHECK(n >= 1, "no samples to score");
  for (const auto& p : samples) DS_CHECK(p.size() == n, "every problem needs {} samples, one has {}", n, p.size());
  const double problems = static_cast<double>(samples.size());

  double avg_sum = 0, avg_no_answer = 0, majority = 0, majority_none = 0, any = 0, none = 0, tokens = 0;
  std::vector<double> run_correct(n, 0.0);
  for (const auto& p : samples) {
    int correct = 0, answered = 0, tok = 0;
    for (size_t i = 0; i < n; ++i) {
      correct += p[i].correct;
      answered += p[i].answer.has_value();
      tok += p[i].tokens;
      run_correct[i] += p[i].correct;
    }
    avg_sum += double(correct) / n;
    avg_no_answer += double(n - answered) / n;
    any += correct > 0;
    none += answered == 0;
    majority += majority_score(p);
    majority_none += answered == 0;
    tokens += double(tok) / n;
  }

  MathMetrics m;
  m.num_entries = static_cast<int>(samples.size());
  m.avg_tokens = static_cast<int>(tokens / problems);
  m.gen_seconds = static_cast<int>(gen_seconds);
  MathMetricsRow avg{fmt::format("pass@1[avg-of-{}]", n), 100 * avg_sum / problems, std::nullopt,
                     100 * avg_no_answer / problems};
  if (n >= 2) {
    double mean = 0;
    for (double& r : run_correct) mean += (r /= problems);
    mean /= n;
    double ss = 0;
    for (double r : run_correct) ss += (r - mean) * (r - mean);
    avg.correct_std = 100 * std::sqrt(ss / (n - 1));
  }
  m.rows.push_back(avg);
  // majority@1 is pass@1, so NeMo-Skills reports majority only from two samples up.
  if (n >= 2) m.rows.push_back({fmt::format("majority@{}", n), 100 * majority / problems, std::nullopt,
                                100 * majority_none / problems});
  m.rows.push_back({fmt::format("pass@{}", n), 100 * any / problems, std::nullopt, 100 * none / problems});
  return m;
}

std::string format_math_metrics(const std::string& benchmark, const MathMetrics& m) {
  std::vector<std::string> head = {"evaluation_mode", "num_entries", "avg_tokens", "gen_seconds", "symbolic_correct",
                                   "no_answer"};
  std::vector<std::vector<std::string>> rows;
  for (const auto& r : m.rows) {
    std::string correct = fmt::format("{:.2f}%", r.correct_pct);
    if (r.correct_std) correct += fmt::format(" \xC2\xB1 {:.2f}%", *r.correct_std);
    rows.push_back({r.mode, std::to_string(m.num_entries), std::to_string(m.avg_tokens), std::to_string(m.gen_seconds),
                    correct, fmt::format("{:.2f}%", r.no_answer_pct)});
  }
  // Column widths count characters, as Python does: "±" is one (two bytes in UTF-8).
  auto chars = [](const std::string& s) {
    return static_cast<size_t>(std::count_if(s.begin(), s.end(), [](char c) { return (c & 0xC0) != 0x80; }));
  };
  std::vector<size_t> width(head.size());
  for (size_t c = 0; c < head.size(); ++c) {
    width[c] = head[c].size();
    for (const auto& r : rows) width[c] = std::max(width[c], chars(r[c]));
  }
  size_t total = 3 * (head.size() - 1);
  for (size_t w : width) total += w;
  auto line = [&](const std::vector<std::string>& cells) {
    std::string s;
    for (size_t c = 0; c < cells.size(); ++c) {
      if (c) s += " | ";
      s += cells[c] + std::string(width[c] - chars(cells[c]), ' ');
    }
    return s + "\n";
  };
  std::string out = center(" " + benchmark + " ", total, '-') + "\n" + line(head);
  for (const auto& r : rows) out += line(r);
  return out;
}

}  // namespace ds::bench
