// Per-pixel sRGB <-> CIELAB on the CPU.
// Parallel decomposition: OpenMP over blocks of 512 pixels; each block is de-interleaved
// into structure-of-arrays buffers so the transform loop vectorises (strided RGB loads
// do not), then re-interleaved. uint8 input decodes through an exact 256-entry table.
// Traffic: 3 reads + 3 writes per pixel; the work is ~10 exp/log evaluations per pixel.
#include <cstdint>

#include "color_math.h"
#include "kernels.h"

namespace qp {

namespace {
constexpr long long BLOCK = 512;

// de-interleave m strided pixels starting at `start` into three channel arrays
template <class T, class V>
void load_block(const V* in, long long start, long long m, long long si, long long sc, T* c0,
                T* c1, T* c2) {
  for (long long i = 0; i < m; ++i) {
    const long long p = (start + i) * si;
    c0[i] = static_cast<T>(in[p]);
    c1[i] = static_cast<T>(in[p + sc]);
    c2[i] = static_cast<T>(in[p + 2 * sc]);
  }
}

// re-interleave into the contiguous [n, 3] output
template <class T>
void store_block(T* out, long long start, long long m, const T* c0, const T* c1, const T* c2) {
  for (long long i = 0; i < m; ++i) {
    T* q = out + 3 * (start + i);
    q[0] = c0[i];
    q[1] = c1[i];
    q[2] = c2[i];
  }
}
}  // namespace

template <class T>
void srgb_to_lab_cpu(const PixelArgs& pa, const ColorSpace& cs) {
  const long long n = pa.n, si = pa.si, sc = pa.sc;
  T inv_white[3];
  inverse_white(cs, inv_white);
  const Mat3<T> rgb_to_xyz = mat3_cast<T>(cs.rgb_to_xyz);
  T lut[256];
  for (int v = 0; v < 256; ++v) lut[v] = srgb_decode<LibMath>(static_cast<T>(v / 255.0));
  const T* fin = reinterpret_cast<const T*>(pa.in);
  const std::uint8_t* u8 = reinterpret_cast<const std::uint8_t*>(pa.in);
  T* o = reinterpret_cast<T*>(pa.out);
  const long long nblocks = (n + BLOCK - 1) / BLOCK;
#pragma omp parallel for schedule(static)
  for (long long blk = 0; blk < nblocks; ++blk) {
    T c0[BLOCK], c1[BLOCK], c2[BLOCK], L[BLOCK], A[BLOCK], Bv[BLOCK];
    const long long start = blk * BLOCK;
    const long long m = (n - start) < BLOCK ? (n - start) : BLOCK;
    if (pa.in_kind == 1) {
      for (long long i = 0; i < m; ++i) {
        const long long p = (start + i) * si;
        c0[i] = lut[u8[p]];
        c1[i] = lut[u8[p + sc]];
        c2[i] = lut[u8[p + 2 * sc]];
      }
    } else {
      load_block(fin, start, m, si, sc, c0, c1, c2);
#pragma GCC ivdep
      for (long long i = 0; i < m; ++i) {
        c0[i] = srgb_decode<FastMath>(c0[i]);
        c1[i] = srgb_decode<FastMath>(c1[i]);
        c2[i] = srgb_decode<FastMath>(c2[i]);
      }
    }
#pragma GCC ivdep
    for (long long i = 0; i < m; ++i) {
      T lab[3];
      linear_to_lab<FastMath>(c0[i], c1[i], c2[i], rgb_to_xyz, inv_white, lab);
      L[i] = lab[0];
      A[i] = lab[1];
      Bv[i] = lab[2];
    }
    store_block(o, start, m, L, A, Bv);
  }
}

template <class T>
void lab_to_srgb_cpu(const PixelArgs& pa, const ColorSpace& cs, bool clip) {
  const long long n = pa.n, si = pa.si, sc = pa.sc;
  const T w[3] = {T(cs.white[0]), T(cs.white[1]), T(cs.white[2])};
  const Mat3<T> minv = mat3_cast<T>(cs.xyz_to_rgb);
  const T* fin = reinterpret_cast<const T*>(pa.in);
  T* o = reinterpret_cast<T*>(pa.out);
  const long long nblocks = (n + BLOCK - 1) / BLOCK;
#pragma omp parallel for schedule(static)
  for (long long blk = 0; blk < nblocks; ++blk) {
    T c0[BLOCK], c1[BLOCK], c2[BLOCK];
    const long long start = blk * BLOCK;
    const long long m = (n - start) < BLOCK ? (n - start) : BLOCK;
    load_block(fin, start, m, si, sc, c0, c1, c2);
#pragma GCC ivdep
    for (long long i = 0; i < m; ++i) {
      T rgb[3];
      lab_to_linear(c0[i], c1[i], c2[i], w, minv, rgb);
      T e0 = srgb_encode<FastMath>(rgb[0]);
      T e1 = srgb_encode<FastMath>(rgb[1]);
      T e2 = srgb_encode<FastMath>(rgb[2]);
      if (clip) {
        e0 = e0 < T(0) ? T(0) : (e0 > T(1) ? T(1) : e0);
        e1 = e1 < T(0) ? T(0) : (e1 > T(1) ? T(1) : e1);
        e2 = e2 < T(0) ? T(0) : (e2 > T(1) ? T(1) : e2);
      }
      c0[i] = e0;
      c1[i] = e1;
      c2[i] = e2;
    }
    store_block(o, start, m, c0, c1, c2);
  }
}

template void srgb_to_lab_cpu<float>(const PixelArgs&, const ColorSpace&);
template void srgb_to_lab_cpu<double>(const PixelArgs&, const ColorSpace&);
template void lab_to_srgb_cpu<float>(const PixelArgs&, const ColorSpace&, bool);
template void lab_to_srgb_cpu<double>(const PixelArgs&, const ColorSpace&, bool);

}  // namespace qp
