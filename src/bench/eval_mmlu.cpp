#include "bench/eval_mmlu.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "bench/download.h"
#include "bench/eval_runner.h"
#include "bench/serving.h"
#include "util/error.h"

namespace ds::bench {

namespace fs = std::filesystem;
using nlohmann::json;

std::string mmlu_format_subject(const std::string& subject) {
  std::string s;
  size_t start = 0;
  while (true) {
    size_t us = subject.find('_', start);
    s += " " + subject.substr(start, us == std::string::npos ? std::string::npos : us - start);
    if (us == std::string::npos) break;
    start = us + 1;
  }
  return s;
}

std::string mmlu_format_example(const CsvTable& rows, size_t idx, bool include_answer) {
  static const char* choices = "ABCD";
  const auto& r = rows[idx];
  DS_CHECK(r.size() >= 3, "MMLU row {} has {} columns (want question, choices..., answer)", idx, r.size());
  std::string p = r[0];
  size_t k = r.size() - 2;
  for (size_t j = 0; j < k && j < 4; ++j) p += fmt::format("\n{}. {}", choices[j], r[j + 1]);
  p += "\nAnswer:";
  if (include_answer) p += fmt::format(" {}\n\n", r[k + 1]);
  return p;
}

std::string mmlu_gen_prompt(const CsvTable& dev, const std::string& subject, int k) {
  std::string p = fmt::format("The following are multiple choice questions (with answers) about{}.\n\n",
                              mmlu_format_subject(subject));
  if (k < 0) k = static_cast<int>(dev.size());
  for (int i = 0; i < k && i < static_cast<int>(dev.size()); ++i) p += mmlu_format_example(dev, i, true);
  return p;
}

int mmlu_prompt_tokens(const std::string& text) { return static_cast<int>((text.size() + 3) / 4); }

std::string mmlu_prediction(const std::string& output) {
  size_t b = output.find_first_not_of(" \t\n\r\f\v");
  return b == std::string::npos ? "" : output.substr(b, 1);
}

namespace {
std::string mmlu_data_dir(const std::string& given) {
  std::string dir = given.empty() ? "data" : given;
  if (fs::exists(fs::path(dir) / "test")) return dir;
  // Like benchmark/mmlu/download_data.sh: fetch data.tar and unpack it next to the wanted dir.
  fs::path parent = fs::path(dir).parent_path();
  std::string tar = (parent.empty() ? fs::path("data.tar") : parent / "data.tar").string();
  ensure_file(tar, kMmluUrl, fmt::format("MMLU data (a directory {} with dev/ and test/ CSVs)", dir));
  std::string cmd = fmt::format("tar xf '{}' -C '{}'", tar, parent.empty() ? "." : parent.string());
  DS_CHECK(std::system(cmd.c_str()) == 0 && fs::exists(fs::path(dir) / "test"), "unpacking {} did not give {}/test", tar, dir);
  return dir;
}
}  // namespace

MmluResult run_mmlu(const MmluOptions& opt) {
  std::string dir = mmlu_data_dir(opt.data_dir);
  std::vector<std::string> subjects;
  for (const auto& e : fs::directory_iterator(fs::path(dir) / "test")) {
    std::string f = e.path().filename().string();
    size_t pos = f.find("_test.csv");
    if (pos != std::string::npos) subjects.push_back(f.substr(0, pos));
  }
  std::sort(subjects.begin(), subjects.end());
  if (opt.nsub < static_cast<int>(subjects.size())) subjects.resize(std::max(opt.nsub, 0));
  DS_CHECK(!subjects.empty(), "no <subject>_test.csv files in {}/test", dir);

  std::vector<std::string> bodies, labels;
  MmluResult r;
  for (const auto& s : subjects) {
    CsvTable dev = read_csv_file((fs::path(dir) / "dev" / (s + "_dev.csv")).string());
    CsvTable test = read_csv_file((fs::path(dir) / "test" / (s + "_test.csv")).string());
    pandas_render(dev);
    pandas_render(test);
    if (static_cast<int>(dev.size()) > opt.ntrain) dev.resize(opt.ntrain);
    int k = opt.ntrain;
    std::string shots = mmlu_gen_prompt(dev, s, k);
    while (mmlu_prompt_tokens(shots) > 1536 && k > 0) shots = mmlu_gen_prompt(dev, s, --k);
    for (size_t i = 0; i < test.size(); ++i) {
      json body = {{"text", shots + mmlu_format_example(test, i, false)},
                   {"sampling_params", {{"max_new_tokens", 1}, {"temperature", 0}}}};
      bodies.push_back(body.dump(-1, ' ', false, json::error_handler_t::replace));
      labels.push_back(test[i].back());
    }
    r.subjects.push_back({s, static_cast<int>(test.size()), 0});
  }
  double tic = now_seconds();
  auto calls = post_all(opt.url, "/generate", bodies, opt.parallel, "mmlu");
  r.latency_s = now_seconds() - tic;
  size_t q = 0;
  int total_correct = 0;
  for (auto& subj : r.subjects) {
    for (int i = 0; i < subj.questions; ++i, ++q) {
      const auto& resp = calls[q].response;
      json j = resp.ok() ? json::parse(resp.body, nullptr, false) : json();
      std::string text;
      if (resp.ok() && !j.is_discarded() && j.contains("text")) {
        text = j["text"].get<std::string>();
      } else {
        r.failed_requests++;
        if (r.first_error.empty())
          r.first_error = !resp.error.empty() ? resp.error : fmt::format("HTTP {} {}: {}", resp.status, resp.reason, resp.body);
      }
      if (mmlu_prediction(text) == labels[q]) subj.correct++, total_correct++;
    }
  }
  r.accuracy = q ? double(total_correct) / double(q) : 0;
  return r;
}

std::string format_mmlu(const MmluResult& r) {
  std::string s;
  for (const auto& subj : r.subjects)
    s += fmt::format("subject: {}, #q:{}, acc: {:.3f}\n", subj.name, subj.questions,
                     subj.questions ? double(subj.correct) / subj.questions : 0.0);
  s += fmt::format("Total latency: {:.3f}\nAverage accuracy: {:.3f}\n", r.latency_s, r.accuracy);
  return s;
}

}  // namespace ds::bench
