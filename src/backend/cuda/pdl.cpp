#include <cstdlib>
#include <string_view>

#include "backend/cuda/pdl.cuh"

namespace ds::backend::cuda {

namespace {
// On unless the variable is "0".
bool env_on(const char* name) {
  const char* e = std::getenv(name);
  return !(e && std::string_view(e) == "0");
}
}  // namespace

std::atomic<bool>& pdl_flag() {
  static std::atomic<bool> flag{env_on("DSSERVE_PDL")};
  return flag;
}

bool early_weights() {
  static const bool on = env_on("DSSERVE_EARLY_WEIGHTS");
  return on;
}

}  // namespace ds::backend::cuda
