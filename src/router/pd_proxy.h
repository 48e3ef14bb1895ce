// `dsserve router --pd-disaggregation`: one request through a (prefill, decode) pair, as sglang_router's PD
// mode. The router adds SGLang's bootstrap_host / bootstrap_port (the prefill server's) and a fresh
// bootstrap_room to the body and sends it to both at once; the prefill server computes the prompt and sends
// its KV to the decode server (disagg/), whose response streams back to the client. A pair that cannot be
// reached or answers 503 before anything reached the client is replaced by another pair with a new room
// (up to --retry-max-retries attempts); a prefill server that fails the request fails it with its error
// while the decode server has sent nothing yet.
#pragma once
#include <memory>

#include "router/proxy.h"

namespace ds::router {

// Call on the loop thread. The workers [0, options.prefill_count) are prefill servers, the rest decode.
void start_pd_proxy(RouterCore& core, ProxyCall call, std::shared_ptr<server::Responder> responder);

}  // namespace ds::router
