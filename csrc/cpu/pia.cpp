// Physics-Informed Attention (QuPAINT Alg. 2) on the CPU, fused end to end.
//
// Input [B, 3, S, S] (uint8 or float32, contiguous), patch size p, k = S / p.
// 1. background: per (image, channel) exact median of S*S values (OpenMP over B x 3):
//    a 256-bin histogram for uint8, std::nth_element for float;
// 2. patches: per (image, patch) exact per-channel medians of p*p values (OpenMP over
//    B x k*k): histogram for uint8, nth_element on a stack copy for float;
// 3. epilogue per patch: medians -> per-channel affine (x * scale + shift: 1/255 for uint8,
//    std/mean to undo a processor's normalisation; medians commute with it) -> sRGB ->
//    CIELAB (colour space cs: D65 sRGB from Python) in double -> Delta-E to the background;
//    then per-image min-max
//    normalisation (a constant map gives zeros).
// "Median" is numpy's: the mean of the two middle values for an even count.
// Traffic: one read of the image per pass (two passes), k*k floats written.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels.h"
#include "qupaint/color.h"

namespace qp {

namespace {

// numpy median of n uint8 values given their 256-bin histogram (counts of type C). Coarse
// counts over 16 bins of 16 are summed first (vector adds), so each rank search walks at
// most 16 + 16 bins instead of up to 256; for small patches (64-196 values) the scan, not
// the counting, dominated.
template <class C>
double hist_median(const C* h, long long n) {
  C hc[16];
  for (int c = 0; c < 16; ++c) {
    C t = 0;
    for (int v = 0; v < 16; ++v) t += h[16 * c + v];
    hc[c] = t;
  }
  auto rank_value = [&](long long rank) {  // smallest v with count(<= v) > rank
    long long seen = 0;
    int c = 0;
    while (seen + hc[c] <= rank) seen += hc[c++];
    int v = c << 4;
    while (seen + h[v] <= rank) seen += h[v++];
    return v;
  };
  const int lo = rank_value((n - 1) / 2), hi = rank_value(n / 2);  // the middle pair
  return 0.5 * (static_cast<double>(lo) + static_cast<double>(hi));
}

// numpy median of n < 65536 uint8 values of a patch. Only the fine bins are counted per
// value: incrementing coarse bins too made a chain of dependent read-modify-writes on one
// bin, since a patch's values share a coarse bin.
double small_median_u8(const std::uint8_t* src, long long rows, long long cols, long long stride) {
  alignas(32) std::uint16_t h[256] = {0};
  for (long long r = 0; r < rows; ++r)
    for (long long q = 0; q < cols; ++q) ++h[src[r * stride + q]];
  return hist_median(h, rows * cols);
}

template <class T>
double select_median(T* v, long long n) {
  const long long hi_rank = n / 2;
  std::nth_element(v, v + hi_rank, v + n);
  const double hi = static_cast<double>(v[hi_rank]);
  if (n % 2) return hi;
  const double lo = static_cast<double>(*std::max_element(v, v + hi_rank));
  return 0.5 * (lo + hi);
}

// sRGB-encoded -> CIELAB in double
struct SrgbToLab {
  Mat3<double> m;
  double iw[3];
  explicit SrgbToLab(const ColorSpace& cs) : m(mat3_cast<double>(cs.rgb_to_xyz)) { inverse_white(cs, iw); }
  void operator()(double r, double g, double b, double* lab) const {
    linear_to_lab<LibMath>(srgb_decode<LibMath>(r), srgb_decode<LibMath>(g), srgb_decode<LibMath>(b), m,
                           iw, lab);
  }
};

}  // namespace

template <class T>
void pia_cpu_impl(const T* x, long long B, long long S, long long p, const double* scale,
                  const double* shift, bool normalize, const ColorSpace& cs, float* out) {
  const SrgbToLab srgb_lab(cs);
  const long long k = S / p, kk = k * k, plane = S * S;
  std::vector<double> bg(static_cast<size_t>(B * 3));
#pragma omp parallel
  {
    std::vector<T> buf;
#pragma omp for schedule(dynamic)
    for (long long bc = 0; bc < B * 3; ++bc) {
      const T* src = x + bc * plane;
      if constexpr (sizeof(T) == 1) {
        // four histograms, merged after: a substrate image repeats a few values, and
        // consecutive increments of one bin serialise (store-to-load forwarding)
        std::uint32_t h4[4][256] = {};
        long long i = 0;
        for (; i + 4 <= plane; i += 4) {
          ++h4[0][src[i]];
          ++h4[1][src[i + 1]];
          ++h4[2][src[i + 2]];
          ++h4[3][src[i + 3]];
        }
        for (; i < plane; ++i) ++h4[0][src[i]];
        std::uint32_t h[256];
        for (int v = 0; v < 256; ++v) h[v] = h4[0][v] + h4[1][v] + h4[2][v] + h4[3][v];
        bg[bc] = hist_median(h, plane);
      } else {
        buf.assign(src, src + plane);
        bg[bc] = select_median(buf.data(), plane);
      }
    }
  }
  std::vector<double> bg_lab(static_cast<size_t>(B * 3));  // once per image, not per patch
  for (long long b = 0; b < B; ++b)
    srgb_lab(bg[b * 3] * scale[0] + shift[0], bg[b * 3 + 1] * scale[1] + shift[1],
             bg[b * 3 + 2] * scale[2] + shift[2], bg_lab.data() + 3 * b);
#pragma omp parallel
  {
    std::vector<T> buf(static_cast<size_t>(p * p));
#pragma omp for schedule(static)
    for (long long bp = 0; bp < B * kk; ++bp) {
      const long long b = bp / kk, pi = (bp % kk) / k, pj = bp % k;
      double med[3];
      for (int c = 0; c < 3; ++c) {
        const T* src = x + (b * 3 + c) * plane + pi * p * S + pj * p;
        if constexpr (sizeof(T) == 1) {
          if (p * p < 65536) {
            med[c] = small_median_u8(src, p, p, S);
          } else {
            std::uint32_t h[256] = {0};
            for (long long r = 0; r < p; ++r)
              for (long long q = 0; q < p; ++q) ++h[src[r * S + q]];
            med[c] = hist_median(h, p * p);
          }
        } else {
          for (long long r = 0; r < p; ++r) std::copy(src + r * S, src + r * S + p, buf.data() + r * p);
          med[c] = select_median(buf.data(), p * p);
        }
      }
      double lab[3];
      const double* lab_bg = bg_lab.data() + 3 * b;
      srgb_lab(med[0] * scale[0] + shift[0], med[1] * scale[1] + shift[1],
               med[2] * scale[2] + shift[2], lab);
      const double d0 = lab[0] - lab_bg[0], d1 = lab[1] - lab_bg[1], d2 = lab[2] - lab_bg[2];
      out[bp] = static_cast<float>(std::sqrt(d0 * d0 + d1 * d1 + d2 * d2));
    }
  }
  if (!normalize) return;
#pragma omp parallel for schedule(static)
  for (long long b = 0; b < B; ++b) {
    float* o = out + b * kk;
    const float lo = *std::min_element(o, o + kk), hi = *std::max_element(o, o + kk);
    const float range = hi - lo;
    for (long long i = 0; i < kk; ++i) o[i] = range > 0.0f ? (o[i] - lo) / range : 0.0f;
  }
}

void pia_cpu(std::uintptr_t x, bool is_uint8, long long B, long long S, long long p,
             const double* scale, const double* shift, bool normalize, const ColorSpace& cs,
             std::uintptr_t out) {
  if (is_uint8)
    pia_cpu_impl(reinterpret_cast<const std::uint8_t*>(x), B, S, p, scale, shift, normalize, cs,
                 reinterpret_cast<float*>(out));
  else
    pia_cpu_impl(reinterpret_cast<const float*>(x), B, S, p, scale, shift, normalize, cs,
                 reinterpret_cast<float*>(out));
}

}  // namespace qp
