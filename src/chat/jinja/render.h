// A chat template compiled once and rendered per request: jinja::CompiledTemplate::parse(source)
// refuses (UnsupportedError, naming the construct and line) anything this interpreter does not
// implement; render(vars) gives exactly what Jinja2 (as transformers sets it up) gives, or throws
// RenderError where Jinja2 raises.
#pragma once
#include <memory>
#include <string>

#include "chat/jinja/ast.h"

namespace ds::chat::jinja {

class CompiledTemplate {
 public:
  static CompiledTemplate parse(const std::string& source);
  // `vars`: the template's variables (messages, tools, add_generation_prompt, bos_token, ...);
  // the globals (range, namespace, raise_exception, ...) are added underneath.
  std::string render(const Dict& vars) const;

 private:
  std::shared_ptr<const Template> tpl_;
};

}  // namespace ds::chat::jinja
