#include "server/logprobs_json.h"

#include "tokenizer/byte_level.h"

namespace ds::server {
namespace {

std::string token_text(const tok::Tokenizer& tok, int32_t id) {
  const int32_t one[] = {id};
  return tok.decode(one, false);
}

// The token's own bytes (a byte-level token may hold part of a UTF-8 character).
Json token_bytes(const tok::Tokenizer& tok, int32_t id) {
  Json bytes = Json::array();
  std::string raw;
  try {
    raw = tok.is_added(id) ? tok.id_to_token(id) : tok::byte_level::token_to_bytes(tok.id_to_token(id));
  } catch (const std::exception&) {
    return bytes;
  }
  for (unsigned char b : raw) bytes.push_back(int(b));
  return bytes;
}

Json chat_entry(const tok::Tokenizer& tok, int32_t id, float logprob) {
  Json e = Json::object();
  e["token"] = token_text(tok, id);
  e["bytes"] = token_bytes(tok, id);
  e["logprob"] = logprob;
  return e;
}

Json native_entry(const tok::Tokenizer& tok, int32_t id, float logprob, bool with_text) {
  return Json::array({logprob, id, with_text ? Json(token_text(tok, id)) : Json(nullptr)});
}

}  // namespace

Json chat_logprobs(const std::vector<runtime::TokenLogprob>& lps, const tok::Tokenizer& tok) {
  Json content = Json::array();
  for (const auto& lp : lps) {
    Json e = chat_entry(tok, lp.token, lp.logprob);
    Json top = Json::array();
    for (const auto& [id, l] : lp.top) top.push_back(chat_entry(tok, id, l));
    e["top_logprobs"] = std::move(top);
    content.push_back(std::move(e));
  }
  return Json{{"content", std::move(content)}};
}

Json completion_logprobs(const std::vector<runtime::TokenLogprob>& lps, const tok::Tokenizer& tok, size_t text_offset) {
  Json tokens = Json::array(), token_logprobs = Json::array(), top = Json::array(), offsets = Json::array();
  for (const auto& lp : lps) {
    std::string t = token_text(tok, lp.token);
    tokens.push_back(t);
    token_logprobs.push_back(lp.logprob);
    Json alts = Json::object();
    for (const auto& [id, l] : lp.top) alts[token_text(tok, id)] = l;
    top.push_back(std::move(alts));
    offsets.push_back(text_offset);
    text_offset += t.size();
  }
  Json j = Json::object();
  j["text_offset"] = std::move(offsets);
  j["token_logprobs"] = std::move(token_logprobs);
  j["tokens"] = std::move(tokens);
  j["top_logprobs"] = std::move(top);
  return j;
}

Json native_token_logprobs(const std::vector<runtime::TokenLogprob>& lps, const tok::Tokenizer& tok, bool with_text) {
  Json out = Json::array();
  for (const auto& lp : lps) out.push_back(native_entry(tok, lp.token, lp.logprob, with_text));
  return out;
}

Json native_top_logprobs(const std::vector<runtime::TokenLogprob>& lps, const tok::Tokenizer& tok, bool with_text) {
  Json out = Json::array();
  for (const auto& lp : lps) {
    Json alts = Json::array();
    for (const auto& [id, l] : lp.top) alts.push_back(native_entry(tok, id, l, with_text));
    out.push_back(std::move(alts));
  }
  return out;
}

}  // namespace ds::server
