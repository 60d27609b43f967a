// Coherent thin-film reflectance, shared by the CPU and CUDA kernels.
//
// Physics and conventions follow tmm.coh_tmm (S. J. Byrnes, arXiv:1603.02720):
// n + ik with k >= 0, layer 0 = incident medium, layer L-1 = exit medium, both
// semi-infinite. The in-plane wavevector kx = n0 sin(theta0) is conserved (complex
// Snell's law); in each layer the normal component q = n cos(theta) is the
// *forward* root of q^2 = n^2 - kx^2: the decaying one (Im q > 0) when the layer
// absorbs or the wave is evanescent, else the one with Re q > 0 (tmm's
// is_forward_angle). Internal layers could take either root without changing R,
// but the forward root keeps |exp(2i delta)| <= 1, so nothing overflows.
//
// Instead of multiplying 2x2 characteristic matrices we fold the stack from the
// bottom with the Airy recursion
//     G_{j-1} = (r_{j-1,j} + G_j e^{2i delta_j}) / (1 + r_{j-1,j} G_j e^{2i delta_j}),
// which is algebraically the same r = M10/M00 as tmm's matrix product but needs one
// complex division per layer instead of eight complex products, and no 1/t factors.
// Fresnel coefficients (tmm's interface_r):
//     r_s = (q_i - q_f) / (q_i + q_f)
//     r_p = (n_f^2 q_i - n_i^2 q_f) / (n_f^2 q_i + n_i^2 q_f)   [= (n_f cos_i - n_i cos_f)/(...)]
// tmm additionally clamps Im(delta) at 35 for opaque layers; with the forward root
// that only changes R by ~e^-70, so we do not.
#pragma once

#include "qupaint/complex.h"

namespace qp {

enum Pol : int { POL_S = 0, POL_P = 1, POL_U = 2 };

// tmm's threshold for "Im(n cos theta) is zero" is 100 machine epsilons of float64.
template <class T> QP_INLINE T forward_eps() { return T(100) * T(2.220446049250313e-16); }

// q = n cos(theta) in a layer of index n, for conserved kx^2.
template <class T> QP_INLINE cplx<T> normal_q(cplx<T> n, T kx2) {
  if (kx2 == T(0)) return n;  // normal incidence: q = n, already forward for k >= 0
  using std::fabs;
  cplx<T> q = csqrt(make(n.re * n.re - n.im * n.im - kx2, T(2) * n.re * n.im));
  const bool forward = fabs(q.im) > forward_eps<T>() ? q.im > T(0) : q.re > T(0);
  return forward ? q : -q;
}

template <class T> QP_INLINE cplx<T> fresnel_s(cplx<T> qi, cplx<T> qf) { return (qi - qf) / (qi + qf); }

template <class T> QP_INLINE cplx<T> fresnel_p(cplx<T> ni, cplx<T> qi, cplx<T> nf, cplx<T> qf) {
  const cplx<T> a = (nf * nf) * qi;
  const cplx<T> b = (ni * ni) * qf;
  return (a - b) / (a + b);
}

// One Airy fold: reflection above a layer from the interface r above it, the folded
// reflection G below it and the round-trip phase ph = e^{2 i delta}.
template <class T> QP_INLINE cplx<T> fold(cplx<T> r, cplx<T> G, cplx<T> ph) {
  const cplx<T> g = G * ph;
  return (r + g) / (make(T(1), T(0)) + r * g);
}

// Reflectance of one stack at one wavelength.
//   n(l)  -> complex index of layer l (l = 0..L-1), any accessor (strided, broadcast)
//   d(l)  -> thickness in nm of layer l (only 1..L-2 are read)
//   sin0  -> sin(theta0); kx = Re(n0(lambda)) sin(theta0) (the incident medium is lossless
//            at oblique incidence, so this is tmm's n0 sin(th_0) at every wavelength)
// Returns R for pol s or p, or (Rs + Rp) / 2 for pol u.
template <class T, class NFn, class DFn>
QP_INLINE T stack_reflectance(NFn n, DFn d, int L, T wavelength_nm, T sin0, int pol) {
  const T kx = n(0).re * sin0;
  const T kx2 = kx * kx;
  const T two_k0 = T(4) * T(3.14159265358979323846) / wavelength_nm;  // 2 * (2 pi / lambda)
  cplx<T> nf = n(L - 1);
  cplx<T> qf = normal_q(nf, kx2);
  cplx<T> ni = n(L - 2);
  cplx<T> qi = normal_q(ni, kx2);
  cplx<T> Gs = fresnel_s(qi, qf);
  cplx<T> Gp = fresnel_p(ni, qi, nf, qf);
  for (int j = L - 2; j >= 1; --j) {
    // Layer j sits between interface (j-1, j) above and the folded stack G below.
    const cplx<T> qj = qi;
    const cplx<T> nj = ni;
    const cplx<T> ph = cexp_i(d(j) * two_k0 * qj);  // e^{2 i delta_j}, delta_j = k0 q_j d_j
    ni = n(j - 1);
    qi = normal_q(ni, kx2);
    if (pol != POL_P) Gs = fold(fresnel_s(qi, qj), Gs, ph);
    if (pol != POL_S) Gp = fold(fresnel_p(ni, qi, nj, qj), Gp, ph);
  }
  if (pol == POL_S) return abs2(Gs);
  if (pol == POL_P) return abs2(Gp);
  return T(0.5) * (abs2(Gs) + abs2(Gp));
}

// Strided view of a [B, L, W] complex array (interleaved re, im) with element strides;
// a stride of 0 broadcasts.
template <class T>
struct NView {
  const T* data;
  long long sb, sl, sw;
  QP_INLINE cplx<T> at(long long b, int l, long long w) const {
    const T* p = data + 2 * (b * sb + l * sl + w * sw);
    return make(p[0], p[1]);
  }
};

template <class T>
struct DView {
  const T* data;
  long long sb, sl;
  QP_INLINE T at(long long b, int l) const { return data[b * sb + l * sl]; }
};

}  // namespace qp
