// Minimal complex arithmetic shared by the CPU and CUDA kernels.
//
// std::complex is not usable in device code and its operator/ carries extra
// overflow handling we do not need (inputs are validated at the Python boundary),
// so the kernels use this POD type with host+device inline functions.
#pragma once

#include <cmath>

#if defined(__CUDACC__)
#define QP_HOST_DEVICE __host__ __device__
#else
#define QP_HOST_DEVICE
#endif
#define QP_INLINE QP_HOST_DEVICE inline

namespace qp {

template <class T>
struct cplx {
  T re, im;
};

template <class T> QP_INLINE cplx<T> make(T re, T im) { return cplx<T>{re, im}; }
template <class T> QP_INLINE cplx<T> operator+(cplx<T> a, cplx<T> b) { return {a.re + b.re, a.im + b.im}; }
template <class T> QP_INLINE cplx<T> operator-(cplx<T> a, cplx<T> b) { return {a.re - b.re, a.im - b.im}; }
template <class T> QP_INLINE cplx<T> operator-(cplx<T> a) { return {-a.re, -a.im}; }
template <class T> QP_INLINE cplx<T> operator*(cplx<T> a, cplx<T> b) {
  return {a.re * b.re - a.im * b.im, a.re * b.im + a.im * b.re};
}
template <class T> QP_INLINE cplx<T> operator*(T s, cplx<T> a) { return {s * a.re, s * a.im}; }
template <class T> QP_INLINE cplx<T> conj(cplx<T> a) { return {a.re, -a.im}; }
template <class T> QP_INLINE T abs2(cplx<T> a) { return a.re * a.re + a.im * a.im; }
template <class T> QP_INLINE cplx<T> operator/(cplx<T> a, cplx<T> b) {
  // Plain formula: |b| is O(1) for every quotient the kernels form (1 + r*G*phase, q_i + q_f).
  const T inv = T(1) / abs2(b);
  return {(a.re * b.re + a.im * b.im) * inv, (a.im * b.re - a.re * b.im) * inv};
}

// Principal square root (Re >= 0), as numpy/scimath and tmm use. The large component
// comes from sqrt((|z| + |Re z|) / 2) and the small one as Im z / (2 t): the textbook
// sqrt((|z| - Re z) / 2) cancels for nearly real z (low-loss layers at oblique incidence)
// and lost ~3 digits of Im q in float32.
template <class T> QP_INLINE cplx<T> csqrt(cplx<T> z) {
  using std::fabs;  // float overloads on the host (CUDA provides them in device code)
  using std::sqrt;
  const T m = sqrt(z.re * z.re + z.im * z.im);
  const T t = sqrt(T(0.5) * (m + fabs(z.re)));
  if (t == T(0)) return {T(0), T(0)};
  if (z.re >= T(0)) return {t, z.im / (T(2) * t)};
  return {fabs(z.im) / (T(2) * t), z.im < T(0) ? -t : t};
}

// exp(i * z) for complex z: |.| = exp(-Im z), arg = Re z.
template <class T> QP_INLINE cplx<T> cexp_i(cplx<T> z) {
  using std::cos;
  using std::exp;
  using std::sin;
  const T mag = exp(-z.im);
  return {mag * cos(z.re), mag * sin(z.re)};
}

}  // namespace qp
