// How many tokens the KV pool holds: --max-total-tokens when given, else a memory budget
// (--mem-fraction-static of the memory there is, less what is reserved) divided by the bytes one
// token takes, capped at
// what max_running_requests x context_length can ever use. Rounded down to whole pages.
#pragma once
#include <cstdint>
#include <string>

namespace ds::runtime {

struct KvPlanInput {
  int64_t bytes_per_token = 0;
  int64_t max_total_tokens = 0;  // the flag; 0: plan from memory
  double mem_fraction = 0.1;
  int64_t available_bytes = 0;  // memory the budget is a fraction of
  int64_t reserved_bytes = 0;   // of the budget, already taken (the weights on a GPU)
  std::string memory_name = "available memory";
  int64_t max_running_requests = 0;
  int64_t context_length = 0;
  int64_t page_size = 64;
};

struct KvPlan {
  int64_t tokens = 0;  // a multiple of page_size
  int64_t bytes = 0;
  std::string why;  // one line for the banner
};

// Throws ds::Error when the pool would not hold one page.
KvPlan plan_kv_pool(const KvPlanInput& in);

// MemAvailable of /proc/meminfo in bytes (0 if unreadable).
int64_t available_host_memory();

}  // namespace ds::runtime
