// Sends many independent JSON POSTs with at most `parallel` in flight (sglang's run_batch /
// ThreadPool role), on one thread, with a progress bar. Results come back in input order.
#pragma once
#include <nlohmann/json.hpp>
#include <functional>
#include <string>
#include <vector>

#include "bench/http_client.h"

namespace ds::bench {

struct EvalCall {
  HttpResponse response;
  double latency_s = 0;
};

// A failed transport or a 5xx is retried up to `retries` times with 1, 2, 4... s pauses
// (simple-evals' sampler retries with backoff); 4xx answers are final.
std::vector<EvalCall> post_all(const Url& url, const std::string& path, const std::vector<std::string>& bodies,
                               int parallel, const std::string& label, int retries = 0);

// Host flags as sglang's eval scripts take them: --host may carry a scheme ("http://127.0.0.1").
Url eval_url(const std::string& base_url, const std::string& host, int port);

// Calls fn(record, line_number) for every non-blank line of a JSONL file; a line that is not
// JSON stops with an error naming the file and line.
void for_each_jsonl(const std::string& path, const std::function<void(const nlohmann::json&, int)>& fn);

// The final answer of a chat reply: message.content, minus anything up to a closing </think>
// (reasoning is not searched for answers).
std::string reply_final_text(const nlohmann::json& message);

}  // namespace ds::bench
