#include <cstdlib>
#include <string_view>

#include "backend/cuda/pdl.cuh"

namespace ds::backend::cuda {

std::atomic<bool>& pdl_flag() {
  static std::atomic<bool> flag{[] {
    const char* e = std::getenv("DSSERVE_PDL");
    return !(e && std::string_view(e) == "0");
  }()};
  return flag;
}

bool early_weights() {
  static const bool on = [] {
    const char* e = std::getenv("DSSERVE_EARLY_WEIGHTS");
    return !(e && std::string_view(e) == "0");
  }();
  return on;
}

}  // namespace ds::backend::cuda
