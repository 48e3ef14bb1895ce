// The filters, tests, globals and methods of Python objects that chat templates use. Names not
// listed here are refused when the template is loaded (filters, tests) or when called.
#pragma once
#include <string>

#include "chat/jinja/value.h"

namespace ds::chat::jinja {

bool has_filter(const std::string& name);
bool has_test(const std::string& name);
Value apply_filter(const std::string& name, const Value& v, Args& args);
bool apply_test(const std::string& name, const Value& v, Args& args);

// A bound method of a str / dict / list value (`s.strip`, `d.items`), or Undefined when `name`
// is not a method of it.
Value method_of(const Value& obj, const std::string& name);

// range, namespace, dict, raise_exception, strftime_now (transformers' globals and Jinja's).
void add_globals(Dict& globals);

// Iteration as Python does it: a list's items, a dict's keys, a string's characters; Undefined
// gives nothing; anything else is a RenderError.
List iterate(const Value& v);

}  // namespace ds::chat::jinja
