// The per-thread bodies of the CUDA kernels, host+device, and their launch geometry.
//
// Each __global__ kernel in csrc/cuda/ is index arithmetic plus one call to a body here.
// bindings.cpp's test hook (_C._cuda_bodies_on_cpu) runs the same bodies over the whole
// grid on the CPU, with the launch's own block/grid arithmetic (launch_grid, thread_index),
// so a wrong index, bound or stride fails in CI on a machine without a GPU.
#pragma once

#include "qupaint/args.h"
#include "qupaint/color.h"
#include "qupaint/tmm.h"

namespace qp {

// Threads per block of each kernel (the grid is launch_grid(total, block)).
constexpr int TMM_BLOCK = 256;
constexpr int STACK_COLOR_BLOCK = 128;
constexpr int PIXEL_BLOCK = 256;

QP_INLINE unsigned launch_grid(long long total, int block) {
  return static_cast<unsigned>((total + block - 1) / block);
}

// The flat index of thread t of block k (as blockIdx.x * blockDim.x + threadIdx.x).
QP_INLINE long long thread_index(unsigned k, int block, unsigned t) {
  return static_cast<long long>(k) * block + t;
}

template <class T> struct TmmView {
  NView<T> n;
  DView<T> d;
  const T* sin0;
  long long sin0_sb;
  const T* wl;
  long long B, W;
  int L, pol;
};

template <class T> TmmView<T> tmm_view(const TmmArgs& a) {
  return TmmView<T>{NView<T>{reinterpret_cast<const T*>(a.n), a.n_sb, a.n_sl, a.n_sw},
                    DView<T>{reinterpret_cast<const T*>(a.d), a.d_sb, a.d_sl},
                    reinterpret_cast<const T*>(a.sin0), a.sin0_sb,
                    reinterpret_cast<const T*>(a.wl), a.B, a.W, static_cast<int>(a.L), a.pol};
}

// thread i of B * W: R of stack i / W at wavelength i % W
template <class T> QP_INLINE void tmm_reflectance_body(const TmmView<T>& v, T* out, long long i) {
  if (i >= v.B * v.W) return;
  const long long b = i / v.W;
  const long long w = i - b * v.W;
  out[i] = stack_reflectance<T>([&](int l) { return v.n.at(b, l, w); },
                                [&](int l) { return v.d.at(b, l); }, v.L, v.wl[w],
                                v.sin0[b * v.sin0_sb], v.pol);
}

template <class T> struct TopView {
  const T* c;   // [P, 7, W]
  const T* kq;  // [2, W]
  int P;
  DView<T> d;
  long long B, W;
};

template <class T> TopView<T> top_view(const TopArgs& a) {
  return TopView<T>{reinterpret_cast<const T*>(a.coeffs), reinterpret_cast<const T*>(a.kq), a.P,
                    DView<T>{reinterpret_cast<const T*>(a.d), a.d_sb, a.d_sl}, a.B, a.W};
}

// R of stack b at wavelength w from the top-fold coefficients: one sincos, one exp, ~10 FMAs
// and one division per polarisation (the algebra of TmmPlan::top, csrc/cpu/tmm_plan.h)
template <class T> QP_INLINE T top_reflectance(const TopView<T>& v, long long b, long long w) {
  using std::cos;
  using std::exp;
  using std::sin;
  const long long W = v.W;
  const T d1 = v.d.at(b, 1);
  const T th = d1 * v.kq[w];
  const T m = exp(-d1 * v.kq[W + w]);
  const T m2 = m * m, cs = cos(th), sn = sin(th);
  T R = 0;
  for (int p = 0; p < v.P; ++p) {
    const T* c = v.c + static_cast<long long>(p) * 7 * W + w;
    const T num = c[0] + m2 * c[W] + m * (c[3 * W] * cs - c[4 * W] * sn);
    const T den = T(1) + m2 * c[2 * W] + m * (c[5 * W] * cs - c[6 * W] * sn);
    R += num / den;
  }
  return v.P == 1 ? R : R / T(v.P);
}

// thread i of B * W (as tmm_reflectance_body), on the top fold
template <class T> QP_INLINE void tmm_top_body(const TopView<T>& v, T* out, long long i) {
  if (i >= v.B * v.W) return;
  const long long b = i / v.W;
  out[i] = top_reflectance(v, b, i - b * v.W);
}

// The constants of the fused colour kernel, in the kernel's type.
template <class T> struct ColorView {
  const T* wt;  // [W, 3]
  int space;
  T inv_white[3];
  Mat3<T> xyz_to_rgb;
};

template <class T> ColorView<T> color_view(const ColorArgs& c, const ColorSpace& cs) {
  ColorView<T> v{reinterpret_cast<const T*>(c.weights), c.space, {}, mat3_cast<T>(cs.xyz_to_rgb)};
  inverse_white(cs, v.inv_white);
  return v;
}

// thread b of B: the colour of stack b, its spectrum accumulated in registers
template <class T>
QP_INLINE void stack_color_body(const TmmView<T>& v, const ColorView<T>& c, T* out, long long b) {
  if (b >= v.B) return;
  const T s0 = v.sin0[b * v.sin0_sb];
  T X = 0, Y = 0, Z = 0;
  for (long long w = 0; w < v.W; ++w) {
    const T R = stack_reflectance<T>([&](int l) { return v.n.at(b, l, w); },
                                     [&](int l) { return v.d.at(b, l); }, v.L, v.wl[w], s0, v.pol);
    X += R * c.wt[3 * w];
    Y += R * c.wt[3 * w + 1];
    Z += R * c.wt[3 * w + 2];
  }
  xyz_to_space<LibMath>(c.space, X, Y, Z, c.xyz_to_rgb, c.inv_white, out + 3 * b);
}

// thread i of n: one pixel (strides si, sc; uint8 input when in_kind == 1)
template <class T>
QP_INLINE void srgb_to_lab_body(const void* in, int in_kind, long long n, long long si,
                                long long sc, const Mat3<T>& rgb_to_xyz, const T* iw, T* out,
                                long long i) {
  if (i >= n) return;
  T c[3];
  for (int k = 0; k < 3; ++k) {
    const long long p = i * si + k * sc;
    const T v = in_kind == 1 ? static_cast<T>(static_cast<const unsigned char*>(in)[p]) / T(255)
                             : static_cast<const T*>(in)[p];
    c[k] = srgb_decode<LibMath>(v);
  }
  linear_to_lab<LibMath>(c[0], c[1], c[2], rgb_to_xyz, iw, out + 3 * i);
}

template <class T>
QP_INLINE void lab_to_srgb_body(const T* in, long long n, long long si, long long sc, const T* w,
                                const Mat3<T>& xyz_to_rgb, bool clip, T* out, long long i) {
  if (i >= n) return;
  T rgb[3];
  lab_to_linear(in[i * si], in[i * si + sc], in[i * si + 2 * sc], w, xyz_to_rgb, rgb);
  for (int k = 0; k < 3; ++k) {
    T e = srgb_encode<LibMath>(rgb[k]);
    if (clip) e = e < T(0) ? T(0) : (e > T(1) ? T(1) : e);
    out[3 * i + k] = e;
  }
}

}  // namespace qp

namespace qp {

// thread b of B (as stack_color_body), on the top fold
template <class T>
QP_INLINE void stack_color_top_body(const TopView<T>& v, const ColorView<T>& c, T* out, long long b) {
  if (b >= v.B) return;
  T X = 0, Y = 0, Z = 0;
  for (long long w = 0; w < v.W; ++w) {
    const T R = top_reflectance(v, b, w);
    X += R * c.wt[3 * w];
    Y += R * c.wt[3 * w + 1];
    Z += R * c.wt[3 * w + 2];
  }
  xyz_to_space<LibMath>(c.space, X, Y, Z, c.xyz_to_rgb, c.inv_white, out + 3 * b);
}

}  // namespace qp
