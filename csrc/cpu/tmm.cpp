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
  T* out = reinterpret_cast<T*>(a.out);
  const long long W = a.W;
  for_each_stack<T>(a, [&](long long b, T*) { return out + b * W; },
                    [](long long, const T*) {});
}

template void tmm_reflectance_cpu<float>(const TmmArgs&);
template void tmm_reflectance_cpu<double>(const TmmArgs&);

}  // namespace qp
