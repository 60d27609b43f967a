// CUDA transfer-matrix reflectance: one thread per (stack, wavelength).
// Each thread reads L complex indices (broadcast strides make these shared and
// cached when all stacks use the same materials) and L thicknesses, and writes
// one float; the per-thread body (qupaint/kernel_bodies.h) is tested on the CPU.
#include "common.cuh"
#include "kernels.h"
#include "qupaint/kernel_bodies.h"

namespace qp {

template <class T>
__global__ void tmm_reflectance_kernel(TmmView<T> v, T* __restrict__ out) {
  tmm_reflectance_body<T>(v, out, thread_index(blockIdx.x, blockDim.x, threadIdx.x));
}

template <class T>
void tmm_reflectance_cuda(const TmmArgs& a, std::uintptr_t stream) {
  const long long total = a.B * a.W;
  if (total == 0) return;
  tmm_reflectance_kernel<T><<<launch_grid(total, TMM_BLOCK), TMM_BLOCK, 0,
                              reinterpret_cast<cudaStream_t>(stream)>>>(
      tmm_view<T>(a), reinterpret_cast<T*>(a.out));
  check_launch("tmm_reflectance_cuda");
}

template <class T>
__global__ void tmm_top_kernel(TopView<T> v, T* __restrict__ out) {
  tmm_top_body<T>(v, out, thread_index(blockIdx.x, blockDim.x, threadIdx.x));
}

template <class T>
void tmm_top_cuda(const TopArgs& a, std::uintptr_t stream) {
  const long long total = a.B * a.W;
  if (total == 0) return;
  tmm_top_kernel<T><<<launch_grid(total, TMM_BLOCK), TMM_BLOCK, 0,
                      reinterpret_cast<cudaStream_t>(stream)>>>(top_view<T>(a),
                                                                reinterpret_cast<T*>(a.out));
  check_launch("tmm_top_cuda");
}

template void tmm_reflectance_cuda<float>(const TmmArgs&, std::uintptr_t);
template void tmm_reflectance_cuda<double>(const TmmArgs&, std::uintptr_t);
template void tmm_top_cuda<float>(const TopArgs&, std::uintptr_t);
template void tmm_top_cuda<double>(const TopArgs&, std::uintptr_t);

}  // namespace qp
