// Tokenizer::load: reads tokenizer.json (+ tokenizer_config.json) and checks that it describes
// what this implementation computes exactly; anything else is refused with a clear error.
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "tokenizer/byte_level.h"
#include "tokenizer/tokenizer_impl.h"
#include "util/error.h"

namespace ds::tok {
namespace {
using json = nlohmann::json;
namespace fs = std::filesystem;

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  DS_CHECK(f.good(), "tokenizer: cannot open {}", p.string());
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

json parse(std::string_view text, std::string_view what) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    fail("tokenizer: {} is not valid JSON: {}", what, e.what());
  }
}

std::string type_of(const json& j) {
  auto t = j.find("type");
  return t != j.end() && t->is_string() ? t->get<std::string>() : std::string("(no type)");
}

// Only "no normalization" is supported: null or an empty Sequence.
void check_normalizer(const json& root) {
  auto n = root.find("normalizer");
  if (n == root.end() || n->is_null()) return;
  if (type_of(*n) == "Sequence" && n->contains("normalizers") && (*n)["normalizers"].is_array() &&
      (*n)["normalizers"].empty())
    return;
  fail("tokenizer.json: unsupported normalizer \"{}\" (only none or an empty Sequence)", type_of(*n));
}

void check_decoder(const json& root) {
  auto d = root.find("decoder");
  DS_CHECK(d != root.end() && d->is_object(), "tokenizer.json: no \"decoder\" (ByteLevel is required)");
  DS_CHECK(type_of(*d) == "ByteLevel", "tokenizer.json: unsupported decoder type \"{}\" (only ByteLevel)",
           type_of(*d));
}

bool flag(const json& t, const char* key, bool dflt) {
  auto it = t.find(key);
  return it != t.end() && it->is_boolean() ? it->get<bool>() : dflt;
}

std::vector<AddedToken> parse_added(const json& root) {
  std::vector<AddedToken> out;
  auto a = root.find("added_tokens");
  if (a == root.end() || a->is_null()) return out;
  DS_CHECK(a->is_array(), "tokenizer.json: \"added_tokens\" must be an array");
  for (size_t i = 0; i < a->size(); ++i) {
    const json& t = (*a)[i];
    DS_CHECK(t.is_object() && t.contains("content") && t["content"].is_string() && t.contains("id") &&
                 t["id"].is_number_integer(),
             "tokenizer.json: added_tokens[{}] needs a string \"content\" and an integer \"id\"", i);
    AddedToken tok;
    tok.content = t["content"].get<std::string>();
    int64_t id = t["id"].get<int64_t>();
    DS_CHECK(id >= 0 && id < (int64_t{1} << 30), "tokenizer.json: added_tokens[{}] has id {} out of range", i, id);
    DS_CHECK(!tok.content.empty(), "tokenizer.json: added_tokens[{}] (id {}) has empty content", i, id);
    tok.id = int32_t(id);
    tok.special = flag(t, "special", false);
    tok.normalized = flag(t, "normalized", true);
    tok.lstrip = flag(t, "lstrip", false);
    tok.rstrip = flag(t, "rstrip", false);
    tok.single_word = flag(t, "single_word", false);
    out.push_back(std::move(tok));
  }
  return out;
}

// bos_token / eos_token in tokenizer_config.json: a string or {"content": ...}.
std::optional<std::string> config_token(const json& cfg, const char* key) {
  auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string())
    return (*it)["content"].get<std::string>();
  fail("tokenizer_config.json: \"{}\" must be a string or an object with \"content\"", key);
}

std::string config_template(const json& cfg) {
  auto it = cfg.find("chat_template");
  if (it == cfg.end() || it->is_null()) return "";
  if (it->is_string()) return it->get<std::string>();
  // Newer files may hold a list of named templates; take "default", else the first.
  if (it->is_array()) {
    for (const json& t : *it)
      if (t.is_object() && t.value("name", "") == "default" && t.contains("template")) return t["template"].get<std::string>();
    if (!it->empty() && (*it)[0].is_object() && (*it)[0].contains("template")) return (*it)[0]["template"].get<std::string>();
  }
  fail("tokenizer_config.json: \"chat_template\" must be a string or a list of {{name, template}}");
}
}  // namespace

Tokenizer Tokenizer::from_strings(std::string_view tokenizer_json, std::string_view config_json) {
  json root = parse(tokenizer_json, "tokenizer.json");
  DS_CHECK(root.is_object(), "tokenizer.json: the top level must be an object");
  DS_CHECK(root.contains("model"), "tokenizer.json: no \"model\" (a BPE model with vocab and merges is required)");
  auto impl = std::make_shared<Impl>();
  check_normalizer(root);
  check_decoder(root);
  DS_CHECK(root.contains("pre_tokenizer"), "tokenizer.json: no \"pre_tokenizer\"");
  impl->pre = PreTokenizer::from_json(root["pre_tokenizer"]);
  impl->bpe = BpeModel::from_json(root["model"]);
  root["model"] = nullptr;  // the vocab copy is no longer needed

  // Ids: the vocab's, then the added tokens'. An added token that is also a vocab string must
  // keep the vocab's id (HF would silently use the vocab's id otherwise).
  int32_t max_id = impl->bpe.max_id();
  std::vector<AddedToken> added;
  for (AddedToken& t : parse_added(root)) {
    if (auto vid = impl->bpe.token_to_id(t.content))
      DS_CHECK(*vid == t.id, "tokenizer.json: added token \"{}\" has id {} but the vocab gives it id {}", t.content,
               t.id, *vid);
    if (const std::string* other = impl->bpe.id_to_token(t.id))
      DS_CHECK(*other == t.content, "tokenizer.json: added token \"{}\" reuses id {} of vocab token \"{}\"",
               t.content, t.id, *other);
    if (impl->added_ids.count(t.content)) continue;  // HF keeps the first of duplicate contents
    impl->added_ids.emplace(t.content, t.id);
    max_id = std::max(max_id, t.id);
    added.push_back(std::move(t));
  }
  DS_CHECK(max_id >= 0, "tokenizer.json: the vocab is empty");

  impl->kind.assign(size_t(max_id) + 1, Impl::kUndefined);
  impl->piece.assign(size_t(max_id) + 1, std::string());
  for (int32_t id = 0; id <= impl->bpe.max_id(); ++id) {
    if (const std::string* t = impl->bpe.id_to_token(id)) {
      impl->kind[size_t(id)] = Impl::kVocab;
      impl->piece[size_t(id)] = byte_level::token_to_bytes(*t);
    }
  }
  for (const AddedToken& t : added) {
    Impl::Kind k = t.special ? Impl::kSpecial : Impl::kAdded;
    DS_CHECK(impl->kind[size_t(t.id)] == Impl::kUndefined || impl->kind[size_t(t.id)] == Impl::kVocab,
             "tokenizer.json: two added tokens share id {}", t.id);
    impl->kind[size_t(t.id)] = k;
    impl->piece[size_t(t.id)] = t.content;
  }
  impl->splitter = AddedTokenSplitter(added);
  impl->added = std::move(added);

  json cfg = config_json.empty() ? json::object() : parse(config_json, "tokenizer_config.json");
  DS_CHECK(cfg.is_object(), "tokenizer_config.json: the top level must be an object");
  Tokenizer tok(impl);
  auto resolve = [&](const char* key, const char* deepseek_name) -> int32_t {
    if (auto name = config_token(cfg, key)) {
      auto id = tok.token_to_id(*name);
      DS_CHECK(id.has_value(), "tokenizer_config.json: {} \"{}\" is not a token of tokenizer.json", key, *name);
      return *id;
    }
    return tok.token_to_id(deepseek_name).value_or(-1);
  };
  impl->bos = resolve("bos_token", "<｜begin▁of▁sentence｜>");
  impl->eos = resolve("eos_token", "<｜end▁of▁sentence｜>");
  if (auto it = cfg.find("add_bos_token"); it != cfg.end() && it->is_boolean()) impl->add_bos = it->get<bool>();
  impl->chat_template = config_template(cfg);
  return tok;
}

Tokenizer Tokenizer::load(const std::string& path) {
  fs::path p(path);
  std::error_code ec;
  DS_CHECK(fs::exists(p, ec), "tokenizer: {} does not exist", path);
  fs::path dir = fs::is_directory(p, ec) ? p : p.parent_path();
  fs::path file = fs::is_directory(p, ec) ? p / "tokenizer.json" : p;
  DS_CHECK(fs::is_regular_file(file, ec), "tokenizer: no tokenizer.json in {}", path);
  fs::path cfg = dir / "tokenizer_config.json";
  std::string cfg_text = fs::is_regular_file(cfg, ec) ? read_file(cfg) : std::string();
  try {
    return from_strings(read_file(file), cfg_text);
  } catch (const Error& e) {
    fail("{} ({})", e.what(), file.string());
  }
}

}  // namespace ds::tok
