#include "server/live_requests.h"

namespace ds::server {

bool LiveRequests::add(const std::string& rid, std::vector<std::string> engine_ids) {
  std::lock_guard lock(mu_);
  if (names_.count(rid)) return false;
  std::unordered_set<std::string> mine;
  for (const auto& id : engine_ids)
    if ((id != rid && names_.count(id)) || !mine.insert(id).second) return false;
  names_.insert(rid);
  names_.insert(engine_ids.begin(), engine_ids.end());
  live_.emplace(rid, std::move(engine_ids));
  return true;
}

void LiveRequests::remove(const std::string& rid) {
  std::lock_guard lock(mu_);
  auto it = live_.find(rid);
  if (it == live_.end()) return;
  for (const auto& id : it->second) names_.erase(id);
  names_.erase(rid);
  live_.erase(it);
}

std::vector<std::string> LiveRequests::engine_ids(const std::string& rid) const {
  std::lock_guard lock(mu_);
  auto it = live_.find(rid);
  return it == live_.end() ? std::vector<std::string>{} : it->second;
}

std::vector<std::string> LiveRequests::all_engine_ids() const {
  std::lock_guard lock(mu_);
  std::vector<std::string> ids;
  for (const auto& [rid, v] : live_) ids.insert(ids.end(), v.begin(), v.end());
  return ids;
}

size_t LiveRequests::size() const {
  std::lock_guard lock(mu_);
  return live_.size();
}

}  // namespace ds::server
