// CPU structure of the transfer-matrix kernels: precompute, then SIMD over wavelengths.
//
// Everything that does not depend on thickness (q = n cos(theta) per layer, Fresnel
// coefficients per interface, 4 pi q / lambda per layer) is computed once per
// (layer, wavelength) into structure-of-arrays buffers: once per call when all stacks
// share materials and angle (stride-0 broadcast, the rendering case), else once per
// stack. The per-stack work is then L-2 passes of an Airy fold over contiguous
// wavelength arrays, with branch-free sincos/exp (qupaint/fastmath.h), which GCC/Clang
// vectorise (`#pragma GCC ivdep`; not `omp simd`, which turns the struct temporaries of
// the inlined complex math into per-lane arrays and gives up). Per stack and wavelength that is, for each internal
// layer, one sincos + one exp + one complex division per polarisation.
#pragma once

#include <algorithm>
#include <vector>

#include "qupaint/args.h"
#include "qupaint/fastmath.h"
#include "qupaint/tmm.h"

namespace qp {

template <class T>
struct TmmPlan {
  long long W = 0;
  int L = 0;
  bool want_s = true, want_p = true;
  // [l * W + w]; interfaces l = 0..L-2, layers l = 0..L-1
  std::vector<T> rs_re, rs_im, rp_re, rp_im, kq_re, kq_im;
  // Layers j_shared..L-2 have one thickness for every stack (the oxide under a flake):
  // their folds are done once in fold_shared() and run() starts from g0_*.
  int j_shared = -1;
  std::vector<T> g0s_re, g0s_im, g0p_re, g0p_im;
  // When only layer 1 varies (a flake on a shared substrate stack), R per polarisation is
  // a real rational function of the round trip m e^{i theta} = e^{i d kq} through layer 1:
  // with r the top interface and g the pre-folded rest (z = g m e^{i theta}),
  //   R = |r + z|^2 / |1 + r z|^2
  //     = (|r|^2 + m^2 |g|^2 + m Re(P e^{i theta})) / (1 + m^2 |r g|^2 + m Re(Q e^{i theta})),
  // P = 2 conj(r) g, Q = 2 r g. top[pol] holds {|r|^2, |g|^2, |r g|^2, P.re, P.im, Q.re,
  // Q.im} per wavelength, so each (stack, wavelength) costs one sincos, one exp, ~10 FMAs
  // and one real division (vs a complex division and 4 complex products in fold()).
  bool top_ready = false;
  std::vector<T> top[2][7];

  void init(long long W_, int L_, int pol) {
    W = W_;
    L = L_;
    want_s = pol != POL_P;
    want_p = pol != POL_S;
    const size_t ni = static_cast<size_t>((L - 1) * W), nl = static_cast<size_t>(L * W);
    for (auto* v : {&rs_re, &rs_im, &rp_re, &rp_im}) v->assign(ni, T(0));
    for (auto* v : {&kq_re, &kq_im}) v->assign(nl, T(0));
  }

  // Fill the buffers for stack b (b is only used to index strided inputs). The per-
  // (layer, wavelength) quantities are computed in double and rounded once into T: for
  // float32 that keeps the phase constant 4 pi q / lambda to one rounding (the phase error
  // of a 20 um layer is ~1e-7 x its ~3e3 rad), at no cost per stack on a shared plan.
  void fill(const NView<T>& n, const T* wl, T sin0, long long b) {
    using D = double;
    const D four_pi = D(4) * D(3.14159265358979323846);
    auto nd = [&](int l, long long w) {
      const cplx<T> v = n.at(b, l, w);
      return make(D(v.re), D(v.im));
    };
    for (long long w = 0; w < W; ++w) {
      const D kx = nd(0, w).re * D(sin0);
      const D kx2 = kx * kx;
      cplx<D> ni = nd(0, w);
      cplx<D> qi = normal_q(ni, kx2);
      const D k2 = four_pi / D(wl[w]);
      for (int l = 0; l < L - 1; ++l) {
        const cplx<D> nf = nd(l + 1, w);
        const cplx<D> qf = normal_q(nf, kx2);
        const size_t i = static_cast<size_t>(l * W + w);
        if (want_s) {
          const cplx<D> r = fresnel_s(qi, qf);
          rs_re[i] = static_cast<T>(r.re);
          rs_im[i] = static_cast<T>(r.im);
        }
        if (want_p) {
          const cplx<D> r = fresnel_p(ni, qi, nf, qf);
          rp_re[i] = static_cast<T>(r.re);
          rp_im[i] = static_cast<T>(r.im);
        }
        kq_re[static_cast<size_t>((l + 1) * W + w)] = static_cast<T>(k2 * qf.re);
        kq_im[static_cast<size_t>((l + 1) * W + w)] = static_cast<T>(k2 * qf.im);
        ni = nf;
        qi = qf;
      }
    }
  }

  // Reflectance of one stack with inner thicknesses d(1..L-2) over all wavelengths into R[W].
  // G*: per-thread scratch of size W each.
  template <class DFn>
  void run(DFn d, T* R, T* gs_re, T* gs_im, T* gp_re, T* gp_im) const {
    const long long W = this->W;  // a local bound, so the SIMD loops need no reload
    int j_first = L - 2;
    if (top_ready) {
      // only the top layer varies per stack (a flake on a shared oxide): one pass from the
      // pre-folded coefficients to R, no copies and no separate finish pass
      top_fold_to_R(d(1), R);
      return;
    }
    if (j_shared >= 1) {
      std::copy(g0s_re.begin(), g0s_re.end(), gs_re);
      std::copy(g0s_im.begin(), g0s_im.end(), gs_im);
      std::copy(g0p_re.begin(), g0p_re.end(), gp_re);
      std::copy(g0p_im.begin(), g0p_im.end(), gp_im);
      j_first = j_shared - 1;
    } else {
      bottom_interface(gs_re, gs_im, gp_re, gp_im);
    }
    fold_layers(d, j_first, 1, gs_re, gs_im, gp_re, gp_im);
    finish(R, gs_re, gs_im, gp_re, gp_im);
  }

  // R of one polarisation at one wavelength from the top coefficients (see top[]).
  static inline T top_R(const T* const* c, long long w, T m, T m2, T cs, T sn) {
    const T num = c[0][w] + m2 * c[1][w] + m * (c[3][w] * cs - c[4][w] * sn);
    const T den = T(1) + m2 * c[2][w] + m * (c[5][w] * cs - c[6][w] * sn);
    return num / den;
  }

  void top_fold_to_R(T d1, T* R) const {
    const long long W = this->W;
    const T* kr = kq_re.data() + W;
    const T* ki = kq_im.data() + W;
    const T* cs_[7];
    const T* cp_[7];
    const int first = want_s ? 0 : 1;
    for (int i = 0; i < 7; ++i) {
      cs_[i] = top[first][i].data();
      cp_[i] = top[1][i].data();
    }
    if (want_s && want_p) {
#pragma GCC ivdep
      for (long long w = 0; w < W; ++w) {
        const cplx<T> e = fm::cis<T>(d1 * kr[w]);
        const T m = fm::exp<T>(-d1 * ki[w]);
        const T m2 = m * m;
        R[w] = T(0.5) * (top_R(cs_, w, m, m2, e.re, e.im) + top_R(cp_, w, m, m2, e.re, e.im));
      }
    } else {
#pragma GCC ivdep
      for (long long w = 0; w < W; ++w) {
        const cplx<T> e = fm::cis<T>(d1 * kr[w]);
        const T m = fm::exp<T>(-d1 * ki[w]);
        R[w] = top_R(cs_, w, m, m * m, e.re, e.im);
      }
    }
  }

  // Coefficients of the top fold from interface 0 (r) and the pre-folded G below layer 1.
  void build_top(const T* gs_re, const T* gs_im, const T* gp_re, const T* gp_im) {
    for (int p = 0; p < 2; ++p) {
      if ((p == 0 && !want_s) || (p == 1 && !want_p)) continue;
      const T* rr = p == 0 ? rs_re.data() : rp_re.data();
      const T* ri = p == 0 ? rs_im.data() : rp_im.data();
      const T* gr = p == 0 ? gs_re : gp_re;
      const T* gi = p == 0 ? gs_im : gp_im;
      for (auto& v : top[p]) v.assign(static_cast<size_t>(W), T(0));
      for (long long w = 0; w < W; ++w) {
        const cplx<T> r = make(rr[w], ri[w]), g = make(gr[w], gi[w]);
        const cplx<T> P = conj(r) * g, Q = r * g;
        top[p][0][w] = abs2(r);
        top[p][1][w] = abs2(g);
        top[p][2][w] = abs2(Q);
        top[p][3][w] = T(2) * P.re;
        top[p][4][w] = T(2) * P.im;
        top[p][5][w] = T(2) * Q.re;
        top[p][6][w] = T(2) * Q.im;
      }
    }
    top_ready = true;
  }

  // G = Fresnel coefficient of the bottom interface (L-2, L-1): where every fold starts.
  void bottom_interface(T* gs_re, T* gs_im, T* gp_re, T* gp_im) const {
    const long long last = static_cast<long long>(L - 2) * W;
    for (long long w = 0; w < W; ++w) {
      gs_re[w] = want_s ? rs_re[last + w] : T(0);
      gs_im[w] = want_s ? rs_im[last + w] : T(0);
      gp_re[w] = want_p ? rp_re[last + w] : T(0);
      gp_im[w] = want_p ? rp_im[last + w] : T(0);
    }
  }

  // Fold layers j_hi down to j_lo (inclusive) onto G.
  template <class DFn>
  void fold_layers(DFn d, int j_hi, int j_lo, T* gs_re, T* gs_im, T* gp_re, T* gp_im) const {
    const long long W = this->W;
    for (int j = j_hi; j >= j_lo; --j) {
      const T dj = d(j);
      const T* kr = kq_re.data() + static_cast<size_t>(j) * W;
      const T* ki = kq_im.data() + static_cast<size_t>(j) * W;
      const size_t up = static_cast<size_t>(j - 1) * W;
      const T* srr = rs_re.data() + up;
      const T* sri = rs_im.data() + up;
      const T* prr = rp_re.data() + up;
      const T* pri = rp_im.data() + up;
      if (want_s && want_p) {
#pragma GCC ivdep
        for (long long w = 0; w < W; ++w) {
          const cplx<T> ph = fm::cexp_i(make(dj * kr[w], dj * ki[w]));
          const cplx<T> s = fold(make(srr[w], sri[w]), make(gs_re[w], gs_im[w]), ph);
          const cplx<T> p = fold(make(prr[w], pri[w]), make(gp_re[w], gp_im[w]), ph);
          gs_re[w] = s.re;
          gs_im[w] = s.im;
          gp_re[w] = p.re;
          gp_im[w] = p.im;
        }
      } else {
        const T* rr = want_s ? srr : prr;
        const T* ri = want_s ? sri : pri;
        T* gr = want_s ? gs_re : gp_re;
        T* gi = want_s ? gs_im : gp_im;
#pragma GCC ivdep
        for (long long w = 0; w < W; ++w) {
          const cplx<T> ph = fm::cexp_i(make(dj * kr[w], dj * ki[w]));
          const cplx<T> g = fold(make(rr[w], ri[w]), make(gr[w], gi[w]), ph);
          gr[w] = g.re;
          gi[w] = g.im;
        }
      }
    }
  }

  void finish(T* R, const T* gs_re, const T* gs_im, const T* gp_re, const T* gp_im) const {
    const long long W = this->W;
    const T half = (want_s && want_p) ? T(0.5) : T(1);
#pragma GCC ivdep
    for (long long w = 0; w < W; ++w) {
      R[w] = half * (gs_re[w] * gs_re[w] + gs_im[w] * gs_im[w] + gp_re[w] * gp_re[w] +
                     gp_im[w] * gp_im[w]);
    }
  }

  // Precompute the folds of the bottom layers whose thickness is the same for all B
  // stacks (checked here, O(B L)); call after fill() on a shared plan. When everything
  // below layer 1 is shared (including L = 3: nothing between layer 1 and the substrate),
  // also build the top-fold coefficients.
  template <class DView_>
  void fold_shared(const DView_& d, long long B) {
    if (L < 3) return;
    int j = L - 2;
    while (j >= 2) {  // layer 1 is folded per stack anyway
      const T d0 = d.at(0, j);
      bool same = true;
      for (long long b = 1; b < B && same; ++b) same = d.at(b, j) == d0;
      if (!same) break;
      --j;
    }
    if (j == L - 2 && L > 3) return;  // nothing shared below the first varying layer
    j_shared = j + 1;
    for (auto* v : {&g0s_re, &g0s_im, &g0p_re, &g0p_im}) v->assign(static_cast<size_t>(W), T(0));
    bottom_interface(g0s_re.data(), g0s_im.data(), g0p_re.data(), g0p_im.data());
    fold_layers([&](int l) { return d.at(0, l); }, L - 2, j_shared, g0s_re.data(), g0s_im.data(),
                g0p_re.data(), g0p_im.data());
    if (j_shared == 2) build_top(g0s_re.data(), g0s_im.data(), g0p_re.data(), g0p_im.data());
  }
};

// Parallel driver shared by the reflectance and fused stack-colour kernels: OpenMP over
// stacks (static schedule); one plan for the batch when all stacks share indices and angle.
// row(b, scratch) returns where stack b's spectrum [W] goes (the output row, or the
// thread's scratch when the spectrum is only reduced); done(b, R) consumes it.
template <class T, class RowFn, class DoneFn>
void for_each_stack(const TmmArgs& a, RowFn row, DoneFn done) {
  const NView<T> n{reinterpret_cast<const T*>(a.n), a.n_sb, a.n_sl, a.n_sw};
  const DView<T> d{reinterpret_cast<const T*>(a.d), a.d_sb, a.d_sl};
  const T* sin0 = reinterpret_cast<const T*>(a.sin0);
  const T* wl = reinterpret_cast<const T*>(a.wl);
  const long long B = a.B, W = a.W;
  const int L = static_cast<int>(a.L);
  const bool shared = a.n_sb == 0 && a.sin0_sb == 0;
  // At normal incidence r_p = -r_s at every interface (q = n), so R_p = R_s exactly and the
  // unpolarised mean needs only the s fold: half the work for the default case.
  bool normal = true;
  for (long long b = 0; b < (a.sin0_sb == 0 ? (B > 0 ? 1 : 0) : B) && normal; ++b)
    normal = sin0[b * a.sin0_sb] == T(0);
  const int pol = (a.pol == POL_U && normal) ? static_cast<int>(POL_S) : a.pol;
  TmmPlan<T> shared_plan;
  if (shared && B > 0) {
    shared_plan.init(W, L, pol);
    shared_plan.fill(n, wl, sin0[0], 0);
    shared_plan.fold_shared(d, B);
  }
#pragma omp parallel
  {
    std::vector<T> scratch(static_cast<size_t>(5 * W));
    TmmPlan<T> own;
    if (!shared) own.init(W, L, pol);
#pragma omp for schedule(static)
    for (long long b = 0; b < B; ++b) {
      if (!shared) own.fill(n, wl, sin0[b * a.sin0_sb], b);
      const TmmPlan<T>& plan = shared ? shared_plan : own;
      T* R = row(b, scratch.data() + 4 * W);
      plan.run([&](int l) { return d.at(b, l); }, R, scratch.data(), scratch.data() + W,
               scratch.data() + 2 * W, scratch.data() + 3 * W);
      done(b, static_cast<const T*>(R));
    }
  }
}

}  // namespace qp
