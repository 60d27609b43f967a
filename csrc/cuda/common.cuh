// Launch helpers shared by the CUDA kernels.
#pragma once

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace qp {

inline void check_launch(const char* what) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) throw std::runtime_error(std::string("qupaint ") + what + ": " + cudaGetErrorString(err));
}

}  // namespace qp
