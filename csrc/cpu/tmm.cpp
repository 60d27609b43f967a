// CPU transfer-matrix reflectance.
// Parallel decomposition: OpenMP over stacks (static schedule); inside a stack, SIMD over
// wavelengths (see tmm_plan.h). Memory traffic: the shared (layer, wavelength) plan
// (6 L W reals, L1/L2 resident for W ~ 300) plus one [W] output row per stack.
#include <vector>

#include "kernels.h"
#include "tmm_plan.h"

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
  // all stacks share indices and angle: one plan for the whole batch
  const bool shared = a.n_sb == 0 && a.sin0_sb == 0;
  TmmPlan<T> shared_plan;
  if (shared && B > 0) {
    shared_plan.init(W, L, a.pol);
    shared_plan.fill(n, wl, sin0[0], 0);
    shared_plan.fold_shared(d, B);
  }
#pragma omp parallel
  {
    std::vector<T> scratch(static_cast<size_t>(4 * W));
    TmmPlan<T> own;
    if (!shared) own.init(W, L, a.pol);
#pragma omp for schedule(static)
    for (long long b = 0; b < B; ++b) {
      if (!shared) own.fill(n, wl, sin0[b * a.sin0_sb], b);
      const TmmPlan<T>& plan = shared ? shared_plan : own;
      plan.run([&](int l) { return d.at(b, l); }, out + b * W, scratch.data(),
               scratch.data() + W, scratch.data() + 2 * W, scratch.data() + 3 * W);
    }
  }
}

template void tmm_reflectance_cpu<float>(const TmmArgs&);
template void tmm_reflectance_cpu<double>(const TmmArgs&);

}  // namespace qp
