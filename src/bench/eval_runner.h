// Sends many independent JSON POSTs with at most `parallel` in flight (sglang's run_batch /
// ThreadPool role), on one thread, with a progress bar. Results come back in input order.
#pragma once
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

}  // namespace ds::bench
