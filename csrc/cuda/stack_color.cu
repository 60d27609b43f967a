// Fused stack colour on CUDA: one thread per stack loops over the W wavelengths, computing
// R with the shared TMM header and accumulating X, Y, Z against the weights [W, 3]
// (read-only, cached); the spectrum never leaves registers. Writes [B, 3].
#include "common.cuh"
#include "kernels.h"
#include "qupaint/color.h"
#include "qupaint/tmm.h"

namespace qp {

template <class T>
__global__ void stack_color_kernel(NView<T> n, DView<T> d, const T* __restrict__ sin0,
                                   long long sin0_sb, const T* __restrict__ wl,
                                   const T* __restrict__ wt, long long B, long long W, int L,
                                   int pol, int space, T wx, T wy, T wz, Mat3<T> xyz_to_rgb,
                                   T* __restrict__ out) {
  const long long b = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= B) return;
  const T s0 = sin0[b * sin0_sb];
  T X = 0, Y = 0, Z = 0;
  for (long long w = 0; w < W; ++w) {
    const T R = stack_reflectance<T>([&](int l) { return n.at(b, l, w); },
                                     [&](int l) { return d.at(b, l); }, L, wl[w], s0, pol);
    X += R * wt[3 * w];
    Y += R * wt[3 * w + 1];
    Z += R * wt[3 * w + 2];
  }
  T* o = out + 3 * b;
  if (space == SPACE_XYZ) {
    o[0] = X;
    o[1] = Y;
    o[2] = Z;
  } else if (space == SPACE_LINEAR_SRGB) {
    mat3_apply(xyz_to_rgb, X, Y, Z, o);
  } else {
    const T iw[3] = {wx, wy, wz};
    xyz_to_lab<LibMath>(X, Y, Z, iw, o);
  }
}

template <class T>
void stack_color_cuda(const TmmArgs& a, const ColorArgs& c, const ColorSpace& cs,
                      std::uintptr_t stream) {
  if (a.B == 0) return;
  T iw[3];
  inverse_white(cs, iw);
  const int block = 128;
  stack_color_kernel<T><<<grid_for(a.B, block), block, 0, reinterpret_cast<cudaStream_t>(stream)>>>(
      NView<T>{reinterpret_cast<const T*>(a.n), a.n_sb, a.n_sl, a.n_sw},
      DView<T>{reinterpret_cast<const T*>(a.d), a.d_sb, a.d_sl}, reinterpret_cast<const T*>(a.sin0),
      a.sin0_sb, reinterpret_cast<const T*>(a.wl), reinterpret_cast<const T*>(c.weights), a.B, a.W,
      static_cast<int>(a.L), a.pol, c.space, iw[0], iw[1], iw[2],
      mat3_cast<T>(cs.xyz_to_rgb), reinterpret_cast<T*>(c.out));
  check_launch("stack_color_cuda");
}

template void stack_color_cuda<float>(const TmmArgs&, const ColorArgs&, const ColorSpace&, std::uintptr_t);
template void stack_color_cuda<double>(const TmmArgs&, const ColorArgs&, const ColorSpace&, std::uintptr_t);

}  // namespace qp
