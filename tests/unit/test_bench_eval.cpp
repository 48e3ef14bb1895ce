// The pure parts of the eval clients: prompt formats, answer extraction, CSV reading, Python RNG.
#include <gtest/gtest.h>

#include "bench/csv.h"
#include "bench/eval_gpqa.h"
#include "bench/eval_gsm8k.h"
#include "bench/eval_mmlu.h"
#include "bench/eval_runner.h"
#include "bench/py_random.h"

using namespace ds::bench;

TEST(BenchGsm8k, AnswerValueLikeSglang) {
  EXPECT_EQ(gsm8k_answer_value("Natalia sold 48/2 = 24 clips.\n#### 72"), "72");
  EXPECT_EQ(gsm8k_answer_value("The total is 1,234 dollars."), "1234");
  EXPECT_EQ(gsm8k_answer_value("3.5 apples"), "5");  // \d+ takes the last run of digits
  EXPECT_EQ(gsm8k_answer_value("no number here"), std::nullopt);
  EXPECT_EQ(gsm8k_answer_value("it is 07"), std::nullopt);  // literal_eval("07") is a SyntaxError
  EXPECT_EQ(gsm8k_answer_value("it is 00"), "0");
  EXPECT_EQ(gsm8k_answer_value(""), std::nullopt);
}

TEST(BenchGsm8k, PromptFormat) {
  std::vector<Gsm8kItem> items = {{"Q1?", "A1 #### 1"}, {"Q2?", "A2 #### 2"}};
  EXPECT_EQ(gsm8k_example(items[0], false), "Question: Q1?\nAnswer:");
  EXPECT_EQ(gsm8k_few_shot(items, 2), "Question: Q1?\nAnswer: A1 #### 1\n\nQuestion: Q2?\nAnswer: A2 #### 2\n\n");
}

TEST(BenchMmlu, PromptFormat) {
  CsvTable dev = {{"What is 1+1?", "1", "2", "3", "4", "B"}};
  EXPECT_EQ(mmlu_format_subject("high_school_math"), " high school math");
  EXPECT_EQ(mmlu_format_example(dev, 0, true), "What is 1+1?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer: B\n\n");
  EXPECT_EQ(mmlu_format_example(dev, 0, false), "What is 1+1?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer:");
  EXPECT_EQ(mmlu_gen_prompt(dev, "abstract_algebra", 1),
            "The following are multiple choice questions (with answers) about abstract algebra.\n\n"
            "What is 1+1?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer: B\n\n");
  EXPECT_EQ(mmlu_prediction("  C. because"), "C");
  EXPECT_EQ(mmlu_prediction(" \n"), "");
}

TEST(BenchCsv, QuotesNewlinesAndPandasValues) {
  auto t = parse_csv("a,\"b, \"\"c\"\"\nd\",3\r\nx,,2.5\n");
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0][1], "b, \"c\"\nd");
  EXPECT_EQ(t[1][1], "");
  pandas_render(t);
  EXPECT_EQ(t[0][2], "3.0");  // a float column prints 3 as 3.0
  EXPECT_EQ(t[1][2], "2.5");
  EXPECT_EQ(t[1][1], "nan");
  CsvTable ints = {{"1"}, {"02"}};
  pandas_render(ints);
  EXPECT_EQ(ints[1][0], "2");
}

TEST(BenchGpqa, ExtractionLikeTheRegex) {
  EXPECT_EQ(gpqa_extract("so... Answer: B"), 'B');
  EXPECT_EQ(gpqa_extract("ANSWER :\n  c"), 'c');  // (?i): lower case matches, then fails to equal "C"
  EXPECT_EQ(gpqa_extract("Answer: E then Answer: A"), 'A');  // first match of the pattern
  EXPECT_EQ(gpqa_extract("The answer is B"), 0);
  nlohmann::json msg = {{"content", "<think>Answer: A</think>\nAnswer: D"}};
  EXPECT_EQ(reply_final_text(msg), "\nAnswer: D");
  EXPECT_EQ(reply_final_text({{"content", nullptr}}), "");
}

TEST(BenchGpqa, PythonRandomMatchesCPython) {
  // Values printed by CPython 3.11: random.Random(0).getrandbits(32) x3, .sample(range(198), 198)[:12],
  // then sample(range(4), 4) x3 from the same generator.
  PyRandom a(0);
  EXPECT_EQ(a.getrandbits(32), 3626764237u);
  EXPECT_EQ(a.getrandbits(32), 1654615998u);
  EXPECT_EQ(a.getrandbits(32), 3255389356u);
  PyRandom r(0);
  auto s = r.sample(198, 198);
  EXPECT_EQ(std::vector<size_t>(s.begin(), s.begin() + 12),
            (std::vector<size_t>{98, 194, 107, 10, 66, 130, 124, 103, 77, 122, 91, 149}));
  EXPECT_EQ(r.sample(4, 4), (std::vector<size_t>{1, 0, 3, 2}));
  EXPECT_EQ(r.sample(4, 4), (std::vector<size_t>{0, 2, 1, 3}));
  EXPECT_EQ(r.sample(4, 4), (std::vector<size_t>{0, 1, 2, 3}));
}

TEST(BenchGpqa, PromptAndCorrectLetter) {
  GpqaExample ex{"Why?", "right", {"w1", "w2", "w3"}, {2, 0, 3, 1}};
  char letter = 0;
  std::string p = gpqa_prompt(ex, letter);
  EXPECT_EQ(letter, 'B');
  EXPECT_NE(p.find("Why?\n\nA) w2\nB) right\nC) w3\nD) w1"), std::string::npos);
  EXPECT_EQ(p.rfind("Answer the following multiple choice question.", 0), 0u);
}
