// Math answer grading for `eval aime25|aime24`: \boxed extraction, LaTeX normalisation, the
// arithmetic evaluator, and equal / not-equal pairs.
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <string>
#include <utility>
#include <vector>

#include "bench/math_answer.h"
#include "bench/math_expr.h"

using namespace ds::bench;

TEST(MathAnswer, LastBoxedWithBalancedBraces) {
  EXPECT_EQ(last_boxed("so \\boxed{70}."), "70");
  EXPECT_EQ(last_boxed("first \\boxed{1}, then \\boxed{\\frac{1}{2}} wins"), "\\frac{1}{2}");
  EXPECT_EQ(last_boxed("\\boxed{\\{1, 2\\}}"), "\\{1, 2\\}");
  EXPECT_EQ(last_boxed("\\boxed{{a}{b}} tail }"), "{a}{b}");
  EXPECT_EQ(last_boxed("\\fbox{12}"), "12");
  EXPECT_EQ(last_boxed("\\boxed{3} and \\fbox{4}"), "4");
  EXPECT_EQ(last_boxed("$\\boxed 42$"), "42");
  EXPECT_EQ(last_boxed("\\boxed{}"), "");
  EXPECT_FALSE(last_boxed("The answer is 70."));
  EXPECT_FALSE(last_boxed("\\boxed{\\frac{1}{2}"));  // never closes
  EXPECT_FALSE(last_boxed("ends with \\boxed"));
  EXPECT_FALSE(last_boxed(""));
}

TEST(MathAnswer, Normalisation) {
  std::vector<std::pair<std::string, std::string>> cases = {
      {"70", "70"},
      {" 070 ", "70"},
      {"0", "0"},
      {"0.50", "0.50"},
      {"$42$", "42"},
      {"\\(42\\)", "42"},
      {"\\boxed{42}", "42"},
      {"{42}", "42"},
      {"1,000", "1000"},
      {"1{,}234{,}567", "1234567"},
      {"1,2", "1,2"},
      {"(1,23)", "(1,23)"},
      {"30^\\circ", "30"},
      {"30^{\\circ}", "30"},
      {"30\xC2\xB0", "30"},
      {"30 degrees", "30"},
      {"5 \\text{ cm}", "5"},
      {"5\\text{ cm}^2", "5"},
      {"12 square units", "12"},
      {"\\text{5}", "5"},
      {"50\\%", "50"},
      {"50%.", "50"},
      {"42.", "42"},
      {"x = 5", "5"},
      {"a_1 = 2", "2"},
      {"\\theta = 30^\\circ", "30"},
      {"\\dfrac{1}{2}", "\\frac{1}{2}"},
      {"\\tfrac{1}{2}", "\\frac{1}{2}"},
      {"\\left( \\frac{1}{2} \\right)", "(\\frac{1}{2})"},
      {"\\leftarrow", "\\leftarrow"},  // not \left
      {"2\\,\\sqrt{3}", "2\\sqrt{3}"},
      {"\xE2\x88\x92" "3", "-3"},
      {"2 \\pi", "2\\pi"},
  };
  for (const auto& [in, want] : cases) EXPECT_EQ(normalize_math_answer(in), want) << "input: " << in;
}

TEST(MathAnswer, EvaluatesArithmetic) {
  auto near = [](const char* e, double v) {
    auto got = eval_math_expr(e);
    ASSERT_TRUE(got) << e;
    EXPECT_NEAR(*got, v, 1e-12 * std::max(1.0, std::fabs(v))) << e;
  };
  near("70", 70);
  near("1+2*3", 7);
  near("(1+2)*3", 9);
  near("2^3^2", 512);
  near("-2^2", -4);
  near("2^-1", 0.5);
  near("2^{10}", 1024);
  near("\\frac{1}{2}", 0.5);
  near("\\frac12", 0.5);
  near("\\frac1{3}", 1.0 / 3);
  near("\\frac{\\sqrt{2}}{2}", std::sqrt(2.0) / 2);
  near("\\sqrt2", std::sqrt(2.0));
  near("\\sqrt[3]{27}", 3);
  near("\\sqrt[3]{-8}", -2);
  near("2\\sqrt{3}", 2 * std::sqrt(3.0));
  near("3\\pi", 3 * std::numbers::pi);
  near("\\pi/2", std::numbers::pi / 2);
  near("2(1+1)", 4);
  near("6\\div4", 1.5);
  near("2\\cdot3\\times4", 24);
  near(".5", 0.5);
  near("1 - - 1", 2);
  for (const char* bad : {"", "x", "2x", "1/0", "\\frac{1}{0}", "\\sqrt{-1}", "\\sqrt[2]{-4}", "(1+2", "1+", "[1,2]",
                          "1,2", "\\infty", "0^{-1}", "10^{400}", "\\frac{1}", ".", "\\sqrt[0]{2}", "2^"})
    EXPECT_FALSE(eval_math_expr(bad)) << bad;
  EXPECT_FALSE(eval_math_expr(std::string(5000, '(') + "1" + std::string(5000, ')')));  // too deep: refused, no crash
}

TEST(MathAnswer, EqualPairs) {
  std::vector<std::pair<std::string, std::string>> equal = {
      {"70", "70"},
      {"70", "070"},
      {"70", "70.0"},
      {"70", "$70$"},
      {"70", "\\boxed{70}"},
      {"70", "70^\\circ"},
      {"70", "70 \\text{ degrees}"},
      {"1000", "1,000"},
      {"1000", "1{,}000"},
      {"1000", "1\\,000"},
      {"1000", "10^3"},
      {"0.5", "\\frac{1}{2}"},
      {"\\frac{1}{2}", "\\dfrac{1}{2}"},
      {"\\frac12", "1/2"},
      {"\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}"},
      {"\\sqrt{2}/2", "\\frac{\\sqrt2}{2}"},
      {"3\\sqrt{3}", "\\sqrt{27}"},
      {"2\\pi", "2 \\cdot \\pi"},
      {"\\frac{\\pi}{2}", "\\pi/2"},
      {"\\frac{1}{2}", "\\left(\\frac{1}{2}\\right)"},
      {"8", "2^3"},
      {"2", "\\sqrt[3]{8}"},
      {"-3", "- 3"},
      {"-3", "\xE2\x88\x92" "3"},
      {"5", "x = 5"},
      {"50", "50\\%"},
      {"42", "42."},
      {"1/3", "0.333333333333"},
      {"(1,2)", "(1, 2)"},
      {"x^2+1", "x^2 + 1"},  // not a number: equal as normalised text
      {"\\frac12", "\\frac{2}{4}"},
      {"2\\sqrt{2}", "\\sqrt{8}"},
      {"\\sqrt{8}", "2\\sqrt2"},
      {"70", "\\text{70}"},
      {"70", "70\\text{ cm}^2"},
      {"25", "\\left(\\dfrac{5}{1}\\right)^{2}"},
  };
  for (const auto& [want, got] : equal) EXPECT_TRUE(math_answers_equal(want, got)) << want << " vs " << got;
}

TEST(MathAnswer, UnequalPairs) {
  std::vector<std::pair<std::string, std::string>> unequal = {
      {"70", "71"},
      {"70", ""},
      {"70", "\\boxed{}"},
      {"70", "7"},
      {"70", "700"},
      {"1000", "100"},
      {"12", "1,2"},
      {"\\frac{1}{2}", "\\frac{1}{3}"},
      {"\\sqrt{2}", "1.414"},
      {"2\\pi", "6.28"},
      {"0.5", "5"},
      {"8", "2^4"},
      {"-3", "3"},
      {"1/3", "0.333"},
      {"x", "y"},
      {"x^2+1", "x^2+2"},
      {"70", "x"},
      {"70", "seventy"},
      {"0.1", "10\\%"},  // the percent sign is dropped, not divided by: 10 is not 0.1
      {"\\pi", "3.14"},
      {"100", "1,00"},
      {"\\frac{x}{2}", "\\frac{1}{2}x"},  // no algebra over variables: different text, no value
  };
  for (const auto& [want, got] : unequal) EXPECT_FALSE(math_answers_equal(want, got)) << want << " vs " << got;
}
