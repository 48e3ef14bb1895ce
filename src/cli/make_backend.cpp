#include "cli/make_backend.h"

#include "util/error.h"

namespace ds::cli {

std::unique_ptr<backend::Backend> make_backend(const std::string& device, int index, int threads) {
  if (device == "cuda") {
#ifdef DSSERVE_HAVE_CUDA
    return backend::make_cuda_backend(index);
#else
    fail("--device cuda: this dsserve was built without CUDA (configure with -DDSSERVE_CUDA=ON where nvcc is "
         "installed)");
#endif
  }
  return backend::make_cpu_backend(threads);
}

}  // namespace ds::cli
