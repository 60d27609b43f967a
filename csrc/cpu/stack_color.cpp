// Fused stack colour on the CPU: reflectance over the spectrum and its CIE integral in one
// pass per stack. Parallel over stacks (tmm_plan.h's driver); each thread's spectrum lives
// in a [W] scratch row (L1 resident), so the [B, W] spectra are never materialised:
// memory traffic is the plan, the weights [W, 3] and one [3] output per stack.
#include "color_math.h"
#include "kernels.h"
#include "tmm_plan.h"

namespace qp {

template <class T>
void stack_color_cpu(const TmmArgs& a, const ColorArgs& c, const ColorSpace& cs) {
  const long long W = a.W;
  // SoA weights so the three reductions vectorise
  std::vector<T> wx(W), wy(W), wz(W);
  const T* wt = reinterpret_cast<const T*>(c.weights);
  for (long long w = 0; w < W; ++w) {
    wx[w] = wt[3 * w];
    wy[w] = wt[3 * w + 1];
    wz[w] = wt[3 * w + 2];
  }
  T inv_white[3];
  inverse_white(cs, inv_white);
  const Mat3<T> xyz_to_rgb = mat3_cast<T>(cs.xyz_to_rgb);
  T* out = reinterpret_cast<T*>(c.out);
  const T* px = wx.data();
  const T* py = wy.data();
  const T* pz = wz.data();
  for_each_stack<T>(
      a, [](long long, T* scratch) { return scratch; },
      [&](long long b, const T* R) {
        // 32-byte vector partial sums per channel: GCC may not reorder a float sum (and
        // `omp simd reduction` left this loop scalar, a chain of dependent FMAs), so the
        // lanes are explicit (GCC/Clang vector extensions; AVX FMAs, SSE pairs without AVX).
        typedef T vec __attribute__((vector_size(32)));
        constexpr int V = 32 / sizeof(T);
        vec ax = {}, ay = {}, az = {};
        long long w = 0;
        for (; w + V <= W; w += V) {
          vec r, x, y, z;
          __builtin_memcpy(&r, R + w, sizeof(vec));
          __builtin_memcpy(&x, px + w, sizeof(vec));
          __builtin_memcpy(&y, py + w, sizeof(vec));
          __builtin_memcpy(&z, pz + w, sizeof(vec));
          ax += r * x;
          ay += r * y;
          az += r * z;
        }
        T X = 0, Y = 0, Z = 0;
        for (int k = 0; k < V; ++k) {
          X += ax[k];
          Y += ay[k];
          Z += az[k];
        }
        for (; w < W; ++w) {
          X += R[w] * px[w];
          Y += R[w] * py[w];
          Z += R[w] * pz[w];
        }
        xyz_to_space<FastMath>(c.space, X, Y, Z, xyz_to_rgb, inv_white, out + 3 * b);
      });
}

template void stack_color_cpu<float>(const TmmArgs&, const ColorArgs&, const ColorSpace&);
template void stack_color_cpu<double>(const TmmArgs&, const ColorArgs&, const ColorSpace&);

}  // namespace qp
