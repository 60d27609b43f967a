// Kernel arguments shared by the CPU and CUDA entry points (host side).
// bindings.cpp exposes these structs to Python (qupaint._C.TmmArgs, ...), where the
// validated tensors' data pointers and element strides are filled in by name; the kernels
// trust them. Colour constants (white point, sRGB matrices) come from qupaint.color, the one
// place they are written, through ColorSpace.
#pragma once

#include <array>
#include <cstdint>

#include "qupaint/color.h"

namespace qp {

using Vec3d = std::array<double, 3>;
using Mat3d = std::array<double, 9>;  // row-major

// A batch of B stacks of L layers at W wavelengths (broadcast strides allowed).
struct TmmArgs {
  std::uintptr_t n = 0;  // complex [B, L, W], interleaved (re, im)
  long long n_sb = 0, n_sl = 0, n_sw = 0;
  std::uintptr_t d = 0;  // real [B, L], nm
  long long d_sb = 0, d_sl = 0;
  std::uintptr_t sin0 = 0;  // real [B]: sin(theta0)
  long long sin0_sb = 0;
  std::uintptr_t wl = 0;  // real [W], nm, contiguous
  long long B = 0, L = 0, W = 0;
  int pol = 0;             // Pol (qupaint/tmm.h)
  std::uintptr_t out = 0;  // real [B, W], contiguous (reflectance only)
};

// A batch in which only layer 1 varies, folded (qupaint.optics.tmm.top_fold): per
// polarisation p and wavelength w the 7 coefficients c[(p * 7 + k) * W + w] of the rational
// function of the round trip through layer 1, kq[w] + i kq[W + w] = 4 pi q_1 / lambda, and
// the thicknesses (only d(b, 1) is read).
struct TopArgs {
  std::uintptr_t coeffs = 0;  // real [P, 7, W], contiguous
  std::uintptr_t kq = 0;      // real [2, W], contiguous
  int P = 1;                  // polarisations averaged (1 or 2)
  std::uintptr_t d = 0;       // real [B, L]
  long long d_sb = 0, d_sl = 0;
  long long B = 0, W = 0;
  std::uintptr_t out = 0;  // real [B, W] (reflectance only)
};

// The colour space of a conversion: XYZ of the Lab white and the linear RGB <-> XYZ matrices.
struct ColorSpace {
  Vec3d white{};
  Mat3d rgb_to_xyz{};
  Mat3d xyz_to_rgb{};
};

// Fused reflectance -> XYZ (-> linear RGB or CIELAB) per stack.
struct ColorArgs {
  std::uintptr_t weights = 0;  // real [W, 3]: CMF x illuminant / sum(ybar x illuminant)
  int space = SPACE_XYZ;       // Space (qupaint/color.h)
  std::uintptr_t out = 0;      // real [B, 3], contiguous
};

// n pixels of 3 channels with element strides (pixel si, channel sc); out [n, 3] contiguous.
struct PixelArgs {
  std::uintptr_t in = 0;
  int in_kind = 0;  // 0 float of the kernel's type, 1 uint8 (scaled by 1/255)
  long long n = 0, si = 0, sc = 0;
  std::uintptr_t out = 0;
};

template <class T> Mat3<T> mat3_cast(const Mat3d& m) {
  Mat3<T> r;
  for (int i = 0; i < 9; ++i) r.m[i] = static_cast<T>(m[i]);
  return r;
}

// (1/Xn, 1/Yn, 1/Zn) in the kernel's type
template <class T> void inverse_white(const ColorSpace& cs, T* iw) {
  for (int i = 0; i < 3; ++i) iw[i] = T(1 / cs.white[i]);
}

}  // namespace qp
