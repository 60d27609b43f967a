// CPU transfer-matrix reflectance.
// Parallel decomposition: OpenMP over the flattened (stack, wavelength) grid in
// static chunks; each (b, w) is independent and reads L complex indices and L
// thicknesses, writes one float. Work per item is O(L) complex ops (one exp,
// one division per layer and polarisation), so the kernel is compute bound.
#include "kernels.h"

#include "qupaint/tmm.h"

namespace qp {

template <class T>
void tmm_reflectance_cpu(const TmmArgs& a) {
  const NView<T> n{reinterpret_cast<const T*>(a.n), a.n_sb, a.n_sl, a.n_sw};
  const DView<T> d{reinterpret_cast<const T*>(a.d), a.d_sb, a.d_sl};
  const T* sin0 = reinterpret_cast<const T*>(a.sin0);
  const T* wl = reinterpret_cast<const T*>(a.wl);
  T* out = reinterpret_cast<T*>(a.out);
  const long long B = a.B, W = a.W;
  const int L = static_cast<int>(a.L);
  const int pol = a.pol;
#pragma omp parallel for schedule(static)
  for (long long b = 0; b < B; ++b) {
    const T s0 = sin0[b * a.sin0_sb];
    for (long long w = 0; w < W; ++w) {
      out[b * W + w] = stack_reflectance<T>(
          [&](int l) { return n.at(b, l, w); }, [&](int l) { return d.at(b, l); }, L, wl[w], s0,
          pol);
    }
  }
}

template void tmm_reflectance_cpu<float>(const TmmArgs&);
template void tmm_reflectance_cpu<double>(const TmmArgs&);

}  // namespace qp
