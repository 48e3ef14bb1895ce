// A small numeric evaluator for math answers written as LaTeX arithmetic, so that "\frac{1}{2}",
// "0.5" and "1/2" compare equal: numbers, + - * / ^ (also \cdot \times \div), implicit
// multiplication ("2\sqrt{3}", "3\pi", "2(1+1)"), \frac (braced or single-digit arguments),
// \sqrt and \sqrt[n], \pi, and ( ) { } grouping. Anything else (variables, intervals, sets,
// text) is not a number: the evaluator says so instead of guessing.
#pragma once
#include <optional>
#include <string_view>

namespace ds::bench {

// The value of `expr` (spaces allowed), or nullopt when it is not plain arithmetic, divides by
// zero, or leaves the reals (sqrt of a negative, 0^-1, overflow).
std::optional<double> eval_math_expr(std::string_view expr);

}  // namespace ds::bench
