// Per-pixel sRGB <-> CIELAB on CUDA: one thread per pixel, the same formulas as the CPU
// kernel (qupaint/color.h) with the device's pow/cbrt. 3 reads + 3 writes per pixel. The
// per-thread bodies (qupaint/kernel_bodies.h) are tested on the CPU.
#include <cstdint>

#include "common.cuh"
#include "kernels.h"
#include "qupaint/kernel_bodies.h"

namespace qp {

template <class T>
__global__ void srgb_to_lab_kernel(const void* __restrict__ in, int in_kind, long long n, long long si,
                                   long long sc, Mat3<T> rgb_to_xyz, T iw0, T iw1, T iw2,
                                   T* __restrict__ out) {
  const T iw[3] = {iw0, iw1, iw2};
  srgb_to_lab_body<T>(in, in_kind, n, si, sc, rgb_to_xyz, iw, out,
                      thread_index(blockIdx.x, blockDim.x, threadIdx.x));
}

template <class T>
__global__ void lab_to_srgb_kernel(const T* __restrict__ in, long long n, long long si, long long sc,
                                   T w0, T w1, T w2, Mat3<T> xyz_to_rgb, bool clip,
                                   T* __restrict__ out) {
  const T w[3] = {w0, w1, w2};
  lab_to_srgb_body<T>(in, n, si, sc, w, xyz_to_rgb, clip, out,
                      thread_index(blockIdx.x, blockDim.x, threadIdx.x));
}

template <class T>
void srgb_to_lab_cuda(const PixelArgs& p, const ColorSpace& cs, std::uintptr_t stream) {
  if (p.n == 0) return;
  T iw[3];
  inverse_white(cs, iw);
  srgb_to_lab_kernel<T><<<launch_grid(p.n, PIXEL_BLOCK), PIXEL_BLOCK, 0,
                          reinterpret_cast<cudaStream_t>(stream)>>>(
      reinterpret_cast<const void*>(p.in), p.in_kind, p.n, p.si, p.sc, mat3_cast<T>(cs.rgb_to_xyz),
      iw[0], iw[1], iw[2], reinterpret_cast<T*>(p.out));
  check_launch("srgb_to_lab_cuda");
}

template <class T>
void lab_to_srgb_cuda(const PixelArgs& p, const ColorSpace& cs, bool clip, std::uintptr_t stream) {
  if (p.n == 0) return;
  lab_to_srgb_kernel<T><<<launch_grid(p.n, PIXEL_BLOCK), PIXEL_BLOCK, 0,
                          reinterpret_cast<cudaStream_t>(stream)>>>(
      reinterpret_cast<const T*>(p.in), p.n, p.si, p.sc, T(cs.white[0]), T(cs.white[1]),
      T(cs.white[2]), mat3_cast<T>(cs.xyz_to_rgb), clip, reinterpret_cast<T*>(p.out));
  check_launch("lab_to_srgb_cuda");
}

template void srgb_to_lab_cuda<float>(const PixelArgs&, const ColorSpace&, std::uintptr_t);
template void srgb_to_lab_cuda<double>(const PixelArgs&, const ColorSpace&, std::uintptr_t);
template void lab_to_srgb_cuda<float>(const PixelArgs&, const ColorSpace&, bool, std::uintptr_t);
template void lab_to_srgb_cuda<double>(const PixelArgs&, const ColorSpace&, bool, std::uintptr_t);

}  // namespace qp
