// Every CUDA runtime call goes through DS_CUDA_CHECK: a failure throws ds::Error naming the call.
#pragma once
#include <cuda_runtime.h>

#include "util/error.h"

#define DS_CUDA_CHECK(call)                                                                   \
  do {                                                                                        \
    cudaError_t err_ = (call);                                                                \
    if (err_ != cudaSuccess) ::ds::fail("CUDA error {} in {} ({}:{})", cudaGetErrorString(err_), #call, \
                                        __FILE__, __LINE__);                                  \
  } while (0)
// After a kernel launch: launch-configuration errors surface here.
#define DS_CUDA_CHECK_LAUNCH() DS_CUDA_CHECK(cudaGetLastError())
