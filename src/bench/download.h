// Data files that sglang's tools download on first use: found locally, else fetched with curl when
// a network answers, else a clear error naming the file to put in place.
#pragma once
#include <string>

namespace ds::bench {

// Returns `local` when it exists; otherwise downloads `url` to `local` (fail fast when offline) or
// throws ds::Error telling where to put the file (`what` names it in the message).
std::string ensure_file(const std::string& local, const std::string& url, const std::string& what);

}  // namespace ds::bench
