// Branch-free sincos and exp that compilers vectorise (no libm calls, no tables).
//
// Why: the CPU kernels spend most of their time in exp/sin/cos of layer phases, and
// scalar libm calls block SIMD. These versions use Cody-Waite range reduction and
// Taylor polynomials (coefficients 1/k!, so nothing here is a fitted constant):
//   sincos: x = q pi + r, |r| <= pi/2; sin r to r^21 (double) / r^11 (float), cos r to
//           r^22 / r^12; truncation < 2e-18 / 6e-8. Accuracy checked against numpy
//           through the kernels (tests/test_fastmath.py: |x| <= 1e4, ~1e-15 abs double,
//           ~1e-6 float).
//   exp:    x = m ln2 + r, |r| <= ln2/2, Taylor to r^13 / r^7, scaled by 2^m built from
//           the exponent bits; inputs are clamped to the normal range (exp(-745) -> tiny).
// CUDA code uses the hardware sincos/exp instead (see qupaint/tmm.h).
#pragma once

#include <cstdint>

#include "qupaint/complex.h"

namespace qp {
namespace fm {

template <class T> struct consts;
template <> struct consts<double> {
  // pi/2 split so q*PIO2_1 and q*PIO2_2 are exact for |q| < 2^20 (Cephes' DP1..DP3 * 2)
  static constexpr double PIO2_1 = 1.57079625129699707031e0;
  static constexpr double PIO2_2 = 7.54978941586159635335e-8;
  static constexpr double PIO2_3 = 5.39030285815811905290e-15;
  static constexpr double TWO_OVER_PI = 0.63661977236758134308;
  static constexpr double LN2_HI = 6.93145751953125e-1;
  static constexpr double LN2_LO = 1.42860682030941723212e-6;
  static constexpr double LOG2E = 1.4426950408889634074;
  static constexpr double EXP_MIN = -708.0;
  static constexpr double EXP_MAX = 709.0;
};
template <> struct consts<float> {
  static constexpr float PIO2_1 = 1.5703125f;
  static constexpr float PIO2_2 = 4.837512969970703125e-4f;
  static constexpr float PIO2_3 = 7.54978995489188216e-8f;
  static constexpr float TWO_OVER_PI = 0.636619772367581343f;
  static constexpr float LN2_HI = 0.693359375f;
  static constexpr float LN2_LO = -2.12194440e-4f;
  static constexpr float LOG2E = 1.44269504088896341f;
  static constexpr float EXP_MIN = -87.0f;
  static constexpr float EXP_MAX = 88.0f;
};

// round-to-nearest without calling rint (vectorises as add/sub of 1.5 * 2^52 or 2^23)
template <class T> inline T round_near(T x);
template <> inline double round_near(double x) {
  const double magic = 6755399441055744.0;  // 1.5 * 2^52
  return (x + magic) - magic;
}
template <> inline float round_near(float x) {
  const float magic = 12582912.0f;  // 1.5 * 2^23
  return (x + magic) - magic;
}

// Polynomials on |r| <= pi/2 (the range after reduction by pi, see cis()).
template <class T> inline T sin_poly(T z, T r);
template <class T> inline T cos_poly(T z);
template <> inline double sin_poly(double z, double r) {
  // r - r^3/3! + ... + r^21/21!
  double p = 1.0 / 51090942171709440000.0;  // 1/21!
  p = p * z - 1.0 / 121645100408832000.0;   // 1/19!
  p = p * z + 1.0 / 355687428096000.0;      // 1/17!
  p = p * z - 1.0 / 1307674368000.0;        // 1/15!
  p = p * z + 1.0 / 6227020800.0;           // 1/13!
  p = p * z - 1.0 / 39916800.0;             // 1/11!
  p = p * z + 1.0 / 362880.0;               // 1/9!
  p = p * z - 1.0 / 5040.0;                 // 1/7!
  p = p * z + 1.0 / 120.0;                  // 1/5!
  p = p * z - 1.0 / 6.0;                    // 1/3!
  return r + r * z * p;
}
template <> inline double cos_poly(double z) {
  // 1 - r^2/2! + ... - r^22/22!
  double p = -1.0 / 1124000727777607680000.0;  // 1/22!
  p = p * z + 1.0 / 2432902008176640000.0;     // 1/20!
  p = p * z - 1.0 / 6402373705728000.0;        // 1/18!
  p = p * z + 1.0 / 20922789888000.0;          // 1/16!
  p = p * z - 1.0 / 87178291200.0;             // 1/14!
  p = p * z + 1.0 / 479001600.0;               // 1/12!
  p = p * z - 1.0 / 3628800.0;                 // 1/10!
  p = p * z + 1.0 / 40320.0;                   // 1/8!
  p = p * z - 1.0 / 720.0;                     // 1/6!
  p = p * z + 1.0 / 24.0;                      // 1/4!
  p = p * z - 0.5;
  return 1.0 + z * p;
}
template <> inline float sin_poly(float z, float r) {
  // to r^11/11!
  float p = -1.0f / 39916800.0f;
  p = p * z + 1.0f / 362880.0f;
  p = p * z - 1.0f / 5040.0f;
  p = p * z + 1.0f / 120.0f;
  p = p * z - 1.0f / 6.0f;
  return r + r * z * p;
}
template <> inline float cos_poly(float z) {
  // to r^12/12!
  float p = 1.0f / 479001600.0f;
  p = p * z - 1.0f / 3628800.0f;
  p = p * z + 1.0f / 40320.0f;
  p = p * z - 1.0f / 720.0f;
  p = p * z + 1.0f / 24.0f;
  p = p * z - 0.5f;
  return 1.0f + z * p;
}

// sign bit of (-1)^q for integral q, as the unsigned integer of T's width
template <class T> struct bits_of;
template <> struct bits_of<double> { using type = std::uint64_t; };
template <> struct bits_of<float> { using type = std::uint32_t; };

// (cos x, sin x) returned by value: out-pointers to locals inside an `omp simd` loop become
// per-lane arrays with scatter stores, which stops vectorisation.
// x = q pi + r with |r| <= pi/2, so (cos x, sin x) = (-1)^q (cos r, sin r): the sign is one
// integer XOR on both results, no quadrant selects. pi is split as 2 * PIO2_k, so q * PI_1
// stays exact (|q| < 2^19 double, 2^14 float). The int32 conversion is one instruction on
// AVX2 (|q| < 2^31 for |x| < 6e9).
template <class T>
inline cplx<T> cis(T x) {
  using K = consts<T>;
  using U = typename bits_of<T>::type;
  const T q = round_near<T>(x * (T(0.5) * K::TWO_OVER_PI));
  const T r = ((x - q * (T(2) * K::PIO2_1)) - q * (T(2) * K::PIO2_2)) - q * (T(2) * K::PIO2_3);
  const T z = r * r;
  const U flip = static_cast<U>(static_cast<std::uint32_t>(static_cast<std::int32_t>(q)) & 1u)
                 << (8 * sizeof(T) - 1);
  const T s = __builtin_bit_cast(T, __builtin_bit_cast(U, sin_poly<T>(z, r)) ^ flip);
  const T c = __builtin_bit_cast(T, __builtin_bit_cast(U, cos_poly<T>(z)) ^ flip);
  return {c, s};
}

template <class T> inline T pow2i(T m);
template <> inline double pow2i(double m) {
  const std::int64_t bits = static_cast<std::int64_t>(static_cast<std::int32_t>(m) + 1023) << 52;
  return __builtin_bit_cast(double, bits);  // memcpy here blocks vectorisation
}
template <> inline float pow2i(float m) {
  const std::int32_t bits = (static_cast<std::int32_t>(m) + 127) << 23;
  return __builtin_bit_cast(float, bits);
}

template <class T> inline T exp_poly(T r);
template <> inline double exp_poly(double r) {
  double p = 1.0 / 6227020800.0;  // 1/13!
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  return p * r + 1.0;
}
template <> inline float exp_poly(float r) {
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  return p * r + 1.0f;
}

template <class T>
inline T exp(T x) {
  using K = consts<T>;
  // Clamp the exponent, not x: fmin/fmax become libcalls (NaN rules) and a clamp of x
  // lets GCC jump-thread a constant exp(EXP_MIN) path, a branch that blocks SIMD.
  // Below EXP_MIN the result is flushed to 0 by the mask `keep`.
  T m = round_near<T>(x * K::LOG2E);
  const T keep = static_cast<T>(m > T(K::EXP_MIN * K::LOG2E));
  m = m * keep;
  x = x * keep;
  m = m < T(K::EXP_MAX * K::LOG2E) ? m : T(K::EXP_MAX * K::LOG2E);
  const T r = (x - m * K::LN2_HI) - m * K::LN2_LO;
  return keep * exp_poly<T>(r) * pow2i<T>(m);
}

// Natural log for x > 0 (other inputs give unspecified finite/NaN values, never a trap):
// x = 2^e m with m in [sqrt(1/2), sqrt(2)), log m = 2 atanh(s), s = (m-1)/(m+1), |s| < 0.172,
// series 2 (s + s^3/3 + ...) to s^21 (double) / s^11 (float): truncation < 1e-18 / 5e-10.
// Exponent and mantissa come from the bits with integer ops only (no int64 -> double
// conversion, which AVX2 lacks).
inline double log(double x) {
  const std::int64_t bits = __builtin_bit_cast(std::int64_t, x);
  double e = __builtin_bit_cast(double, (bits >> 52) | 0x4330000000000000LL) - 4503599627370496.0;
  double m = __builtin_bit_cast(double, (bits & 0x000fffffffffffffLL) | 0x3ff0000000000000LL);
  const double big = static_cast<double>(m > 1.4142135623730951);
  m = m * (1.0 - 0.5 * big);
  e = e - 1023.0 + big;
  const double s = (m - 1.0) / (m + 1.0);
  const double z = s * s;
  double p = 1.0 / 21;
  p = p * z + 1.0 / 19;
  p = p * z + 1.0 / 17;
  p = p * z + 1.0 / 15;
  p = p * z + 1.0 / 13;
  p = p * z + 1.0 / 11;
  p = p * z + 1.0 / 9;
  p = p * z + 1.0 / 7;
  p = p * z + 1.0 / 5;
  p = p * z + 1.0 / 3;
  const double lm = 2.0 * s + 2.0 * s * z * p;
  return e * consts<double>::LN2_HI + (e * consts<double>::LN2_LO + lm);
}
inline float log(float x) {
  const std::int32_t bits = __builtin_bit_cast(std::int32_t, x);
  float e = static_cast<float>((bits >> 23) & 0xff);
  float m = __builtin_bit_cast(float, (bits & 0x007fffff) | 0x3f800000);
  const float big = static_cast<float>(m > 1.41421356f);
  m = m * (1.0f - 0.5f * big);
  e = e - 127.0f + big;
  const float s = (m - 1.0f) / (m + 1.0f);
  const float z = s * s;
  float p = 1.0f / 11;
  p = p * z + 1.0f / 9;
  p = p * z + 1.0f / 7;
  p = p * z + 1.0f / 5;
  p = p * z + 1.0f / 3;
  const float lm = 2.0f * s + 2.0f * s * z * p;
  return e * consts<float>::LN2_HI + (e * consts<float>::LN2_LO + lm);
}

// x^y for x > 0 through exp(y log x)
template <class T> inline T pow(T x, T y) { return exp<T>(y * log(x)); }

// cube root for t > 0: exp(log t / 3); in double polished by one Newton step (the float
// version is already within ~2 ulp, and the step's division costs more than it buys)
template <class T> inline T cbrt(T t) { return exp<T>(log(t) * T(1.0 / 3.0)); }
template <> inline double cbrt(double t) {
  const double y = exp<double>(log(t) * (1.0 / 3.0));
  return y - (y * y * y - t) / (3.0 * y * y);
}

// e^{i z} for complex z = a + ib: e^{-b} (cos a + i sin a)
template <class T>
inline cplx<T> cexp_i(cplx<T> z) {
  const cplx<T> u = cis<T>(z.re);
  const T m = exp<T>(-z.im);
  return {m * u.re, m * u.im};
}

}  // namespace fm
}  // namespace qp
