// The grammar of a DeepSeek-V3.2 tool-call block (DSML, spec/dsv32.md section 6), with each
// call's arguments held to its tool's JSON schema: what tool_choice "required" / a named function
// constrains the output to. Written in the canonical form DeepSeek's encoder renders:
//
//   \n\n<｜DSML｜function_calls>\n
//   <｜DSML｜invoke name="NAME">\n
//   <｜DSML｜parameter name="K" string="true">raw text</｜DSML｜parameter>\n      (strings)
//   <｜DSML｜parameter name="K" string="false">JSON</｜DSML｜parameter>\n        (other values)
//   </｜DSML｜invoke>\n ... more invokes when parallel ...
//   </｜DSML｜function_calls>
//
// Parameters follow the schema's `properties` in order (required ones always, optional ones may
// be left out; other names as additionalProperties allows). A property that is a plain string
// (or one with a format, or minLength/maxLength: then without '<' or whitespace at its ends, or
// an enum of strings that survive the parser's whitespace strip) is written raw; everything else
// (patterns too) as JSON under its schema. Raw text never holds "</" and JSON
// strings write '<' as \u003c, since the tool parser ends a value at the first closing tag.
// A `parameters` schema that is not an object with properties at its top (anyOf, $ref, ...)
// is written as one JSON object inside the invoke (the parser's other accepted form).
#pragma once
#include <string_view>

#include "grammar/expr.h"

namespace ds::grammar {

// `spec_json`: {"tools": [{"name": N, "parameters": SCHEMA?, "strict": BOOL?}, ...],
// "parallel": BOOL?, "optional": BOOL?}. With "optional" (tool_choice "auto") the block may be
// left out: free text comes first, and it may not open a block other than through this grammar
// (no "<｜DSML｜function_calls>" or "<function_calls>" in it), so a call that is made follows the
// schemas. A tool whose schema uses what the engine does not support gets free
// parameters (any names, any values), unless it is strict: then this throws ds::Error naming the
// tool and the keyword. Throws for an empty tool list or a name holding '"'.
Grammar dsml_tool_calls_grammar(std::string_view spec_json);

}  // namespace ds::grammar
