// dsserve tokenize / detokenize: the tokenizer from the command line (stdin -> stdout), for
// scripts and for checking ids against other implementations.
#include <nlohmann/json.hpp>

#include <cstdio>
#include <iostream>
#include <iterator>
#include <memory>

#include "cli/commands.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace ds::cli {
namespace {

std::string read_stdin() {
  std::ios::sync_with_stdio(false);
  return std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
}

void write_stdout(const std::string& s) {
  DS_CHECK(std::fwrite(s.data(), 1, s.size(), stdout) == s.size() && std::fflush(stdout) == 0,
           "cannot write to stdout");
}

std::vector<int32_t> parse_ids(const std::string& text) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail("detokenize: stdin is not a JSON array of ids: {}", e.what());
  }
  DS_CHECK(j.is_array(), "detokenize: stdin must be a JSON array of ids, got {}", j.type_name());
  std::vector<int32_t> ids;
  ids.reserve(j.size());
  for (size_t i = 0; i < j.size(); ++i) {
    DS_CHECK(j[i].is_number_integer() && j[i].get<int64_t>() >= INT32_MIN && j[i].get<int64_t>() <= INT32_MAX,
             "detokenize: element {} ({}) is not a 32-bit integer id", i, j[i].dump());
    ids.push_back(j[i].get<int32_t>());
  }
  return ids;
}

}  // namespace

void register_tokenize(CLI::App& app) {
  auto tok_path = std::make_shared<std::string>();
  auto* enc = app.add_subcommand("tokenize", "Read UTF-8 text on stdin, print its token ids as a JSON array (no BOS)");
  enc->add_option("--tokenizer", *tok_path, "tokenizer.json, or a directory holding it")->required();
  enc->callback([tok_path] {
    auto tok = tok::Tokenizer::load(*tok_path);
    write_stdout(nlohmann::json(tok.encode(read_stdin())).dump() + "\n");
  });

  auto detok_path = std::make_shared<std::string>();
  auto skip = std::make_shared<bool>(false);
  auto* dec = app.add_subcommand("detokenize", "Read a JSON array of token ids on stdin, print the text");
  dec->add_option("--tokenizer", *detok_path, "tokenizer.json, or a directory holding it")->required();
  dec->add_flag("--skip-special-tokens", *skip, "leave special tokens out of the text");
  dec->callback([detok_path, skip] {
    auto tok = tok::Tokenizer::load(*detok_path);
    write_stdout(tok.decode(parse_ids(read_stdin()), *skip));
  });
}

}  // namespace ds::cli
