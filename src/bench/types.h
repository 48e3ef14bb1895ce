// Plain data shared by the serving benchmark's parts: one dataset row, one request's outcome.
// Field meanings follow sglang.bench_serving (DatasetRow, RequestFuncOutput).
#pragma once
#include <string>
#include <vector>

namespace ds::bench {

struct DatasetRow {
  std::string prompt;
  int prompt_len = 0;  // tokens; -1 when unknown (no tokenizer): the server's count is used instead
  int output_len = 0;  // requested max new tokens
};

struct RequestOutput {
  std::string generated_text;
  bool success = false;
  double latency = 0;  // s, from send to the last body line
  double ttft = 0;     // s, from send to the first non-empty text
  std::vector<double> itl;               // s, gaps between later text chunks (per token for /generate)
  std::vector<std::string> text_chunks;  // the text of each chunk after the first (pairs with itl)
  int prompt_len = 0;
  std::string error;
  int output_len = 0;          // server's completion token count when reported, else the requested length
  double start_time = 0;       // s, on the benchmark's monotonic clock
  int server_prompt_tokens = -1;  // prompt tokens reported by the server, -1 when not reported
};

}  // namespace ds::bench
