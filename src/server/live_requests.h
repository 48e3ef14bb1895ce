// The generation requests being served, by request id (the `rid` of /generate, the id of an OpenAI
// response), with the engine ids of their choices: what /abort_request aborts, and what keeps a
// client-chosen rid unique among live requests (no key or engine id is used twice at once).
#pragma once
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace ds::server {

class LiveRequests {
 public:
  // False (nothing added) when rid or one of the engine ids is live already.
  bool add(const std::string& rid, std::vector<std::string> engine_ids);
  void remove(const std::string& rid);
  std::vector<std::string> engine_ids(const std::string& rid) const;  // empty when not live
  std::vector<std::string> all_engine_ids() const;
  size_t size() const;

 private:
  mutable std::mutex mu_;
  std::unordered_map<std::string, std::vector<std::string>> live_;
  std::unordered_set<std::string> names_;  // every live rid and engine id
};

}  // namespace ds::server
