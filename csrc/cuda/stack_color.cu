// Fused stack colour on CUDA: one thread per stack loops over the W wavelengths, computing
// R with the shared TMM header and accumulating X, Y, Z against the weights [W, 3]
// (read-only, cached); the spectrum never leaves registers. Writes [B, 3]. The per-thread
// body (qupaint/kernel_bodies.h) is tested on the CPU.
#include "common.cuh"
#include "kernels.h"
#include "qupaint/kernel_bodies.h"

namespace qp {

template <class T>
__global__ void stack_color_kernel(TmmView<T> v, ColorView<T> c, T* __restrict__ out) {
  stack_color_body<T>(v, c, out, thread_index(blockIdx.x, blockDim.x, threadIdx.x));
}

template <class T>
void stack_color_cuda(const TmmArgs& a, const ColorArgs& c, const ColorSpace& cs,
                      std::uintptr_t stream) {
  if (a.B == 0) return;
  stack_color_kernel<T><<<launch_grid(a.B, STACK_COLOR_BLOCK), STACK_COLOR_BLOCK, 0,
                          reinterpret_cast<cudaStream_t>(stream)>>>(
      tmm_view<T>(a), color_view<T>(c, cs), reinterpret_cast<T*>(c.out));
  check_launch("stack_color_cuda");
}

template <class T>
__global__ void stack_color_top_kernel(TopView<T> v, ColorView<T> c, T* __restrict__ out) {
  stack_color_top_body<T>(v, c, out, thread_index(blockIdx.x, blockDim.x, threadIdx.x));
}

template <class T>
void stack_color_top_cuda(const TopArgs& a, const ColorArgs& c, const ColorSpace& cs,
                          std::uintptr_t stream) {
  if (a.B == 0) return;
  stack_color_top_kernel<T><<<launch_grid(a.B, STACK_COLOR_BLOCK), STACK_COLOR_BLOCK, 0,
                              reinterpret_cast<cudaStream_t>(stream)>>>(
      top_view<T>(a), color_view<T>(c, cs), reinterpret_cast<T*>(c.out));
  check_launch("stack_color_top_cuda");
}

template void stack_color_top_cuda<float>(const TopArgs&, const ColorArgs&, const ColorSpace&, std::uintptr_t);
template void stack_color_top_cuda<double>(const TopArgs&, const ColorArgs&, const ColorSpace&, std::uintptr_t);
template void stack_color_cuda<float>(const TmmArgs&, const ColorArgs&, const ColorSpace&, std::uintptr_t);
template void stack_color_cuda<double>(const TmmArgs&, const ColorArgs&, const ColorSpace&, std::uintptr_t);

}  // namespace qp
