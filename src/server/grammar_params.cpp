#include "server/grammar_params.h"

#include "server/api_error.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace ds::server {

namespace {

// A schema given as an object or as JSON text (SGLang's sampling_params.json_schema is a string).
std::string schema_text(const Json& v, const std::string& field) {
  if (v.is_string()) {
    const std::string s = v.get<std::string>();
    if (!Json::accept(s)) bad_param(field, field + " is not valid JSON");
    return s;
  }
  if (v.is_object() || v.is_boolean()) return dump(v);
  bad_param(field, field + " must be a JSON Schema (an object, or its JSON text)");
}

GrammarRequest make(grammar::GrammarKind kind, std::string text, std::string field) {
  GrammarRequest r;
  r.spec.kind = kind;
  r.spec.text = std::move(text);
  r.field = std::move(field);
  return r;
}

}  // namespace

std::optional<GrammarRequest> read_grammar_fields(const Fields& f, bool allow_response_format) {
  std::vector<GrammarRequest> found;
  if (auto re = f.string("regex")) found.push_back(make(grammar::GrammarKind::Regex, *re, f.name("regex")));
  if (auto eb = f.string("ebnf")) found.push_back(make(grammar::GrammarKind::Ebnf, *eb, f.name("ebnf")));
  if (const Json* js = f.get("json_schema"))
    found.push_back(make(grammar::GrammarKind::JsonSchema, schema_text(*js, f.name("json_schema")), f.name("json_schema")));
  if (const Json* rf = allow_response_format ? f.get("response_format") : nullptr) {
    const std::string field = f.name("response_format");
    if (!rf->is_object() || !rf->contains("type") || !(*rf)["type"].is_string())
      bad_param(field, field + " must be an object with a string type");
    const std::string type = (*rf)["type"];
    if (type == "json_object") {
      found.push_back(make(grammar::GrammarKind::JsonObject, "", field));
    } else if (type == "json_schema") {
      const Json* js = rf->contains("json_schema") ? &(*rf)["json_schema"] : nullptr;
      if (!js || !js->is_object()) bad_param(field, field + ".json_schema must be an object with a schema");
      // OpenAI's field is `schema`; SGLang also reads `schema_` (its pydantic alias).
      const char* key = js->contains("schema") ? "schema" : js->contains("schema_") ? "schema_" : nullptr;
      if (!key) bad_param(field, field + ".json_schema.schema is required");
      if (js->contains("strict") && !(*js)["strict"].is_boolean())
        bad_param(field, field + ".json_schema.strict must be a boolean");
      found.push_back(make(grammar::GrammarKind::JsonSchema, schema_text((*js)[key], field + ".json_schema.schema"),
                           field + ".json_schema.schema"));
    } else if (type != "text") {
      bad_param(field, field + ".type '" + type + "' is not supported (text, json_object, json_schema)");
    }
  }
  if (found.size() > 1)
    bad_param(found[1].field, "only one of regex, ebnf, json_schema and response_format may constrain a request (got " +
                                  found[0].field + " and " + found[1].field + ")");
  if (found.empty()) return std::nullopt;
  return found[0];
}

GrammarRequest tool_call_grammar(const Json& tools, const std::vector<std::string>& names, bool parallel, bool optional_block) {
  Json spec = {{"tools", Json::array()}, {"parallel", parallel}};
  if (optional_block) spec["optional"] = true;
  for (const std::string& name : names) {
    for (const Json& t : tools) {
      if (!t.is_object() || !t.contains("function") || !t["function"].is_object()) continue;
      const Json& f = t["function"];
      if (f.value("name", "") != name) continue;
      Json tool = {{"name", name}, {"strict", f.contains("strict") && f["strict"] == true}};
      if (f.contains("parameters")) tool["parameters"] = f["parameters"];
      spec["tools"].push_back(std::move(tool));
      break;  // the first tool of a name is the one the model was shown first
    }
  }
  return make(grammar::GrammarKind::DsmlToolCalls, dump(spec), "tools");
}

bool has_strict_tool(const Json& tools) {
  if (!tools.is_array()) return false;
  for (const Json& t : tools)
    if (t.is_object() && t.contains("function") && t["function"].is_object() && t["function"].contains("strict") &&
        t["function"]["strict"] == true)
      return true;
  return false;
}

std::shared_ptr<const grammar::CompiledGrammar> ServerGrammars::compile(const tok::Tokenizer& tok, const GrammarRequest& req) {
  std::call_once(once_, [&] {
    compiler_ = std::make_unique<grammar::GrammarCompiler>(grammar::TokenTable::from_tokenizer(tok, {tok.eos_id()}), 256, json_);
  });
  try {
    return compiler_->compile(req.spec);
  } catch (const ds::Error& e) {
    bad_param(req.field, req.field + ": " + e.what());
  }
}

void attach_grammar(ServerGrammars& grammars, const tok::Tokenizer& tok, const std::optional<GrammarRequest>& req,
                    bool starts_in_reasoning, std::vector<runtime::GenerateRequest>& requests) {
  if (!req) return;
  runtime::GrammarConstraint c;
  c.grammar = grammars.compile(tok, *req);
  if (starts_in_reasoning) c.trigger = tok.encode("</think>", false);
  for (auto& r : requests) r.grammar = c;
}

}  // namespace ds::server
