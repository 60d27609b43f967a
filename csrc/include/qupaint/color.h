// Colour transforms shared by the CPU and CUDA kernels (one formula, two math back ends).
//
// sRGB (IEC 61966-2-1): the piecewise transfer function. The RGB <-> XYZ matrices and the
// Lab white are kernel arguments (qp::ColorSpace), written once in qupaint.color.convert.
// CIELAB (CIE 15:2004): L = 116 f(Y/Yn) - 16, a = 500 (f(X/Xn) - f(Y/Yn)),
// b = 200 (f(Y/Yn) - f(Z/Zn)), f(t) = t^(1/3) above (6/29)^3, else t / (3 (6/29)^2) + 4/29.
//
// Domain notes: decode keeps negative inputs on the linear segment (x / 12.92) and values
// above 1 on the power segment, so out-of-gamut colours give finite results, never NaN.
#pragma once

#include "qupaint/complex.h"

namespace qp {

// A row-major 3x3 matrix, passed by value to kernels.
template <class T> struct Mat3 {
  T m[9];
};

template <class T> QP_INLINE void mat3_apply(const Mat3<T>& a, T x, T y, T z, T* out) {
  out[0] = a.m[0] * x + a.m[1] * y + a.m[2] * z;
  out[1] = a.m[3] * x + a.m[4] * y + a.m[5] * z;
  out[2] = a.m[6] * x + a.m[7] * y + a.m[8] * z;
}

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

// linear RGB -> XYZ (matrix rgb_to_xyz) -> Lab
template <class M, class T>
QP_INLINE void linear_to_lab(T r, T g, T b, const Mat3<T>& rgb_to_xyz, const T* inv_white, T* lab) {
  T xyz[3];
  mat3_apply(rgb_to_xyz, r, g, b, xyz);
  xyz_to_lab<M>(xyz[0], xyz[1], xyz[2], inv_white, lab);
}

// The output spaces of the fused stack colour.
enum Space : int { SPACE_XYZ = 0, SPACE_LINEAR_SRGB = 1, SPACE_LAB = 2 };

// XYZ -> the requested space into o[3] (CIELAB relative to 1 / inv_white)
template <class M, class T>
QP_INLINE void xyz_to_space(int space, T X, T Y, T Z, const Mat3<T>& xyz_to_rgb, const T* inv_white,
                            T* o) {
  if (space == SPACE_XYZ) {
    o[0] = X;
    o[1] = Y;
    o[2] = Z;
  } else if (space == SPACE_LINEAR_SRGB) {
    mat3_apply(xyz_to_rgb, X, Y, Z, o);
  } else {
    xyz_to_lab<M>(X, Y, Z, inv_white, o);
  }
}

// Lab -> XYZ -> linear RGB (matrix xyz_to_rgb); white = (Xn, Yn, Zn)
template <class T>
QP_INLINE void lab_to_linear(T L, T a, T bb, const T* white, const Mat3<T>& xyz_to_rgb, T* rgb) {
  const T fy = (L + T(16)) / T(116);
  const T X = lab_finv(fy + a / T(500)) * white[0];
  const T Y = lab_finv(fy) * white[1];
  const T Z = lab_finv(fy - bb / T(200)) * white[2];
  mat3_apply(xyz_to_rgb, X, Y, Z, rgb);
}

}  // namespace qp
