// Math answers as NeMo-Skills grades them for AIME-style evals: the last \boxed{...} of the
// final answer is the prediction; it matches the expected answer when the two are equal after
// LaTeX normalisation, or when both evaluate to the same number (bench/math_expr.h).
#pragma once
#include <optional>
#include <string>
#include <string_view>

namespace ds::bench {

// The content of the last \boxed{...} (or \fbox{...}) in `text`, braces balanced; nullopt when
// there is none or its braces never close.
std::optional<std::string> last_boxed(std::string_view text);

// A canonical spelling of an answer: math delimiters, \boxed, \left/\right, spacing commands,
// \text wrappers, trailing units, degrees, percent signs and full stops removed; \dfrac and
// \tfrac read as \frac; thousands separators and leading zeros dropped from numbers ("1,000"
// and "0042" read as 1000 and 42); "x = 5" read as 5; all whitespace removed.
std::string normalize_math_answer(std::string_view answer);

// True when `predicted` answers `expected`: equal normalised text, or equal values where both
// evaluate (relative tolerance 1e-9). An empty prediction never matches.
bool math_answers_equal(std::string_view expected, std::string_view predicted);

}  // namespace ds::bench
