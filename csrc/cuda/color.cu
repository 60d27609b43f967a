// Per-pixel sRGB <-> CIELAB on CUDA: one thread per pixel, the same formulas as the CPU
// kernel (qupaint/color.h) with the device's pow/cbrt. 3 reads + 3 writes per pixel.
#include <cstdint>

#include "../cpu/kernels.h"
#include "common.cuh"
#include "qupaint/color.h"

namespace qp {

template <class T>
__global__ void srgb_to_lab_kernel(const void* __restrict__ in, int in_kind, long long n, long long si,
                                   long long sc, T iw0, T iw1, T iw2, T* __restrict__ out) {
  const long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  T c[3];
  for (int k = 0; k < 3; ++k) {
    const long long p = i * si + k * sc;
    const T v = in_kind == 1 ? static_cast<T>(static_cast<const std::uint8_t*>(in)[p]) / T(255)
                             : static_cast<const T*>(in)[p];
    c[k] = srgb_decode<LibMath>(v);
  }
  const T iw[3] = {iw0, iw1, iw2};
  linear_to_lab<LibMath>(c[0], c[1], c[2], iw, out + 3 * i);
}

template <class T>
__global__ void lab_to_srgb_kernel(const T* __restrict__ in, long long n, long long si, long long sc,
                                   T w0, T w1, T w2, Minv<T> minv, bool clip, T* __restrict__ out) {
  const long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const T w[3] = {w0, w1, w2};
  T rgb[3];
  lab_to_linear(in[i * si], in[i * si + sc], in[i * si + 2 * sc], w, minv.m, rgb);
  for (int k = 0; k < 3; ++k) {
    T e = srgb_encode<LibMath>(rgb[k]);
    if (clip) e = e < T(0) ? T(0) : (e > T(1) ? T(1) : e);
    out[3 * i + k] = e;
  }
}

template <class T>
void srgb_to_lab_cuda(std::uintptr_t in, int in_kind, long long n, long long si, long long sc,
                      const double* white, std::uintptr_t out, std::uintptr_t stream) {
  if (n == 0) return;
  srgb_to_lab_kernel<T><<<grid_for(n, 256), 256, 0, reinterpret_cast<cudaStream_t>(stream)>>>(
      reinterpret_cast<const void*>(in), in_kind, n, si, sc, T(1 / white[0]), T(1 / white[1]),
      T(1 / white[2]), reinterpret_cast<T*>(out));
  check_launch("srgb_to_lab_cuda");
}

template <class T>
void lab_to_srgb_cuda(std::uintptr_t in, long long n, long long si, long long sc, const double* white,
                      const double* minv_d, bool clip, std::uintptr_t out, std::uintptr_t stream) {
  if (n == 0) return;
  Minv<T> minv;
  for (int k = 0; k < 9; ++k) minv.m[k] = static_cast<T>(minv_d[k]);
  lab_to_srgb_kernel<T><<<grid_for(n, 256), 256, 0, reinterpret_cast<cudaStream_t>(stream)>>>(
      reinterpret_cast<const T*>(in), n, si, sc, T(white[0]), T(white[1]), T(white[2]), minv, clip,
      reinterpret_cast<T*>(out));
  check_launch("lab_to_srgb_cuda");
}

template void srgb_to_lab_cuda<float>(std::uintptr_t, int, long long, long long, long long,
                                      const double*, std::uintptr_t, std::uintptr_t);
template void srgb_to_lab_cuda<double>(std::uintptr_t, int, long long, long long, long long,
                                       const double*, std::uintptr_t, std::uintptr_t);
template void lab_to_srgb_cuda<float>(std::uintptr_t, long long, long long, long long, const double*,
                                      const double*, bool, std::uintptr_t, std::uintptr_t);
template void lab_to_srgb_cuda<double>(std::uintptr_t, long long, long long, long long, const double*,
                                       const double*, bool, std::uintptr_t, std::uintptr_t);

}  // namespace qp
