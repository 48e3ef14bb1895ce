# DSSERVE_CUDA: AUTO builds the CUDA backend when nvcc is found, ON requires it, OFF never
# looks for it. The CPU build never needs CUDA.
set(DSSERVE_HAVE_CUDA OFF)
if(NOT DSSERVE_CUDA STREQUAL "OFF")
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    set(CMAKE_CUDA_ARCHITECTURES 90a)   # Hopper only (sm_90a: wgmma, TMA)
    set(CMAKE_CUDA_STANDARD 17)          # CMake 3.25 knows no CUDA20 flag for nvcc; kernels need no more
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    enable_language(CUDA)
    find_package(CUDAToolkit REQUIRED)
    set(DSSERVE_HAVE_CUDA ON)
  elseif(DSSERVE_CUDA STREQUAL "ON")
    message(FATAL_ERROR "DSSERVE_CUDA=ON but no CUDA compiler (nvcc) was found")
  endif()
endif()
message(STATUS "dsserve: CUDA backend ${DSSERVE_HAVE_CUDA}")
