// Declarations of the CPU and CUDA entry points that bindings.cpp exposes.
// All pointers are raw buffers validated by the Python layer; strides are in elements.
#pragma once

#include <cstdint>

namespace qp {

struct TmmArgs {
  std::uintptr_t n;      // complex [B, L, W], interleaved (re, im)
  long long n_sb, n_sl, n_sw;
  std::uintptr_t d;      // real [B, L], nm
  long long d_sb, d_sl;
  std::uintptr_t sin0;   // real [B]: sin(theta0)
  long long sin0_sb;
  std::uintptr_t wl;     // real [W], nm, contiguous
  long long B, L, W;
  int pol;               // Pol
  std::uintptr_t out;    // real [B, W], contiguous
};

template <class T> void tmm_reflectance_cpu(const TmmArgs& a);
#ifdef QUPAINT_WITH_CUDA
template <class T> void tmm_reflectance_cuda(const TmmArgs& a, std::uintptr_t stream);
#endif

}  // namespace qp
