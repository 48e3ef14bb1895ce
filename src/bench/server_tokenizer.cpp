#include "bench/server_tokenizer.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>

namespace ds::bench {
namespace fs = std::filesystem;
namespace {

std::vector<fs::path> hf_hub_dirs() {
  std::vector<fs::path> dirs;
  if (const char* d = std::getenv("HF_HUB_CACHE"); d && *d) dirs.emplace_back(d);
  if (const char* d = std::getenv("HF_HOME"); d && *d) dirs.push_back(fs::path(d) / "hub");
  if (const char* d = std::getenv("HOME"); d && *d) dirs.push_back(fs::path(d) / ".cache" / "huggingface" / "hub");
  return dirs;
}

// models--org--name/snapshots/<rev>/tokenizer.json, the most recently written snapshot first.
std::optional<std::string> from_hf_cache(const std::string& repo) {
  if (repo.find('/') == std::string::npos || repo.starts_with("/") || repo.find("..") != std::string::npos)
    return std::nullopt;
  std::string folder = "models--" + repo;
  for (size_t p = 0; (p = folder.find('/', p)) != std::string::npos;) folder.replace(p, 1, "--");
  for (const auto& hub : hf_hub_dirs()) {
    std::error_code ec;
    const fs::path snaps = hub / folder / "snapshots";
    if (!fs::is_directory(snaps, ec)) continue;
    std::vector<fs::path> found;
    for (const auto& e : fs::directory_iterator(snaps, ec))
      if (fs::exists(e.path() / "tokenizer.json")) found.push_back(e.path());
    if (found.empty()) continue;
    std::sort(found.begin(), found.end(), [](const fs::path& a, const fs::path& b) {
      std::error_code e1, e2;
      return fs::last_write_time(a, e1) > fs::last_write_time(b, e2);
    });
    return found.front().string();
  }
  return std::nullopt;
}

std::vector<std::string> ask_server(const Url& url, std::string& errors) {
  std::vector<std::string> names;
  auto add = [&](const nlohmann::json& j, const char* key) {
    if (j.is_object() && j.contains(key) && j[key].is_string()) {
      std::string v = j[key].get<std::string>();
      if (!v.empty() && std::find(names.begin(), names.end(), v) == names.end()) names.push_back(v);
    }
  };
  for (const char* path : {"/get_model_info", "/v1/models"}) {
    HttpResponse r = http_fetch(url, "GET", path, "", 10);
    if (!r.ok()) {
      errors += fmt::format("{}{} {}", errors.empty() ? "" : "; ", path,
                            r.error.empty() ? fmt::format("HTTP {}", r.status) : r.error);
      continue;
    }
    auto j = nlohmann::json::parse(r.body, nullptr, false);
    if (j.is_discarded()) continue;
    if (std::string(path) == "/get_model_info") {
      add(j, "tokenizer_path");
      add(j, "model_path");
    } else if (j.contains("data") && j["data"].is_array()) {
      for (const auto& m : j["data"]) add(m, "root");
    }
  }
  return names;
}

}  // namespace

std::optional<std::string> resolve_local_tokenizer(const std::string& name) {
  std::error_code ec;
  const fs::path p(name);
  if (fs::is_regular_file(p, ec) && p.filename() == "tokenizer.json") return name;
  if (fs::is_directory(p, ec) && fs::exists(p / "tokenizer.json", ec)) return name;
  if (fs::exists(p, ec)) return std::nullopt;  // a local path without tokenizer.json: not a hub name
  return from_hf_cache(name);
}

ServerTokenizerLookup find_server_tokenizer(const Url& url) {
  ServerTokenizerLookup out;
  std::string errors;
  out.names = ask_server(url, errors);
  for (const auto& n : out.names)
    if (auto local = resolve_local_tokenizer(n)) {
      out.local_path = local;
      return out;
    }
  if (out.names.empty())
    out.why_not = fmt::format("the server at {} did not say which tokenizer it serves ({})", url.str(),
                              errors.empty() ? "no tokenizer_path, model_path or root in its answers" : errors);
  else
    out.why_not = fmt::format(
        "the server serves '{}', which is neither a local directory with tokenizer.json nor in the local "
        "Hugging Face cache (nothing is downloaded)",
        fmt::join(out.names, "' / '"));
  return out;
}

}  // namespace ds::bench
