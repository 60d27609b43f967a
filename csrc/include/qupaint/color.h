// Colour transforms shared by the CPU and CUDA kernels (one formula, two math back ends).
//
// sRGB (IEC 61966-2-1): piecewise transfer function and the standard's RGB -> XYZ matrix
// (4 decimals, the one colour-science uses); XYZ -> RGB is that matrix's exact inverse so
// round trips are lossless (the standard's printed inverse differs by < 2e-4).
// CIELAB (CIE 15:2004): L = 116 f(Y/Yn) - 16, a = 500 (f(X/Xn) - f(Y/Yn)),
// b = 200 (f(Y/Yn) - f(Z/Zn)), f(t) = t^(1/3) above (6/29)^3, else t / (3 (6/29)^2) + 4/29.
// The white (Xn, Yn, Zn) is a kernel argument (D65 xy = (0.3127, 0.3290) by default).
//
// Domain notes: decode keeps negative inputs on the linear segment (x / 12.92) and values
// above 1 on the power segment, so out-of-gamut colours give finite results, never NaN.
#pragma once

#include "qupaint/complex.h"

namespace qp {

// A 3x3 matrix passed by value to kernels.
template <class T> struct Minv {
  T m[9];
};

// The math policy: pow and cbrt for positive arguments.
struct LibMath {
  template <class T> static QP_INLINE T pow(T x, T y) { return std::pow(x, y); }
  template <class T> static QP_INLINE T cbrt(T x) { return std::cbrt(x); }
};

// Both branches are evaluated (SIMD selects), so pow's argument is kept > 0 in each.
template <class M, class T> QP_INLINE T srgb_decode(T v) {
  const T a = (v > T(0.04045) ? v : T(0.04045)) + T(0.055);
  const T hi = M::pow(a / T(1.055), T(2.4));
  return v <= T(0.04045) ? v / T(12.92) : hi;
}

template <class M, class T> QP_INLINE T srgb_encode(T v) {
  const T a = v > T(0.0031308) ? v : T(0.0031308);
  const T hi = T(1.055) * M::pow(a, T(1.0 / 2.4)) - T(0.055);
  return v <= T(0.0031308) ? T(12.92) * v : hi;
}

template <class M, class T> QP_INLINE T lab_f(T t) {
  const T eps = T(216.0 / 24389.0);  // (6/29)^3
  const T c = M::cbrt(t > eps ? t : eps);
  return t > eps ? c : t * T(841.0 / 108.0) + T(4.0 / 29.0);
}

template <class T> QP_INLINE T lab_finv(T f) {
  const T d = T(6.0 / 29.0);
  return f > d ? f * f * f : T(108.0 / 841.0) * (f - T(4.0 / 29.0));
}

// XYZ -> Lab; inv_white = (1/Xn, 1/Yn, 1/Zn)
template <class M, class T>
QP_INLINE void xyz_to_lab(T X, T Y, T Z, const T* inv_white, T* lab) {
  const T fx = lab_f<M>(X * inv_white[0]);
  const T fy = lab_f<M>(Y * inv_white[1]);
  const T fz = lab_f<M>(Z * inv_white[2]);
  lab[0] = T(116) * fy - T(16);
  lab[1] = T(500) * (fx - fy);
  lab[2] = T(200) * (fy - fz);
}

// linear sRGB -> XYZ (IEC 61966-2-1 matrix) -> Lab
template <class M, class T>
QP_INLINE void linear_to_lab(T r, T g, T b, const T* inv_white, T* lab) {
  xyz_to_lab<M>(T(0.4124) * r + T(0.3576) * g + T(0.1805) * b,
                T(0.2126) * r + T(0.7152) * g + T(0.0722) * b,
                T(0.0193) * r + T(0.1192) * g + T(0.9505) * b, inv_white, lab);
}

// Lab -> XYZ -> linear sRGB (inverse matrix, exact to double rounding); white = (Xn, Yn, Zn)
template <class T>
QP_INLINE void lab_to_linear(T L, T a, T bb, const T* white, const T* minv, T* rgb) {
  const T fy = (L + T(16)) / T(116);
  const T X = lab_finv(fy + a / T(500)) * white[0];
  const T Y = lab_finv(fy) * white[1];
  const T Z = lab_finv(fy - bb / T(200)) * white[2];
  rgb[0] = minv[0] * X + minv[1] * Y + minv[2] * Z;
  rgb[1] = minv[3] * X + minv[4] * Y + minv[5] * Z;
  rgb[2] = minv[6] * X + minv[7] * Y + minv[8] * Z;
}

}  // namespace qp
