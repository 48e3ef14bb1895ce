// The backend a command's --device names: one place for the CPU / CUDA choice and the error of a build
// without CUDA.
#pragma once
#include <memory>
#include <string>

#include "backend/backend.h"

namespace ds::cli {

// device "cuda": the CUDA backend on GPU `index` (fails clearly in builds without CUDA); else the CPU
// backend with `threads` threads (0: all cores).
std::unique_ptr<backend::Backend> make_backend(const std::string& device, int index, int threads);

}  // namespace ds::cli
