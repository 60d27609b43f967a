// CUDA transfer-matrix reflectance: one thread per (stack, wavelength).
// Each thread reads L complex indices (broadcast strides make these shared and
// cached when all stacks use the same materials) and L thicknesses, and writes
// one float; the per-thread math is the same header as the CPU kernel.
#include "common.cuh"
#include "kernels.h"
#include "qupaint/tmm.h"

namespace qp {

template <class T>
__global__ void tmm_reflectance_kernel(NView<T> n, DView<T> d, const T* __restrict__ sin0,
                                       long long sin0_sb, const T* __restrict__ wl, long long B,
                                       long long W, int L, int pol, T* __restrict__ out) {
  const long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= B * W) return;
  const long long b = i / W;
  const long long w = i - b * W;
  out[i] = stack_reflectance<T>([&](int l) { return n.at(b, l, w); },
                                [&](int l) { return d.at(b, l); }, L, wl[w], sin0[b * sin0_sb], pol);
}

template <class T>
void tmm_reflectance_cuda(const TmmArgs& a, std::uintptr_t stream) {
  const long long total = a.B * a.W;
  if (total == 0) return;
  const int block = 256;
  tmm_reflectance_kernel<T><<<grid_for(total, block), block, 0,
                              reinterpret_cast<cudaStream_t>(stream)>>>(
      NView<T>{reinterpret_cast<const T*>(a.n), a.n_sb, a.n_sl, a.n_sw},
      DView<T>{reinterpret_cast<const T*>(a.d), a.d_sb, a.d_sl}, reinterpret_cast<const T*>(a.sin0),
      a.sin0_sb, reinterpret_cast<const T*>(a.wl), a.B, a.W, static_cast<int>(a.L), a.pol,
      reinterpret_cast<T*>(a.out));
  check_launch("tmm_reflectance_cuda");
}

template void tmm_reflectance_cuda<float>(const TmmArgs&, std::uintptr_t);
template void tmm_reflectance_cuda<double>(const TmmArgs&, std::uintptr_t);

}  // namespace qp
