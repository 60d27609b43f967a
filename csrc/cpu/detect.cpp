// The flake detector's per-pixel work on the CPU (qupaint.detect.core; the numpy reference
// is the same module's backend="reference" path, and the tests hold the two together).
//
// detect_blocks_cpu: block means of the decoded image (decode: a per-channel table of the
//   256 8-bit values, the camera's response) and whether a block holds a saturated pixel.
// detect_contrast_cpu: C = blur(decode(img)) / field - 1, where the blur is a separable
//   kernel [2r+1] with scipy's "reflect" edges (d c b a | a b c d) and the field is the
//   block-resolution substrate field, bilinearly upsampled (block centres, edges held),
//   exactly as the reference computes it: along x on two block rows, then blended along y.
// detect_flags_cpu: per pixel, bit 0 "candidate" (chi-square against the substrate noise
//   above fg_chi2, not bright), bit 1 "core" (a candidate whose colour gradient, Sobel in
//   noise units, is below the edge threshold), bit 2 "strong" (mean |C| >= floor), bit 3
//   "bright" (saturated, or a channel of C above bright_level). Sobel as scipy's: [-1 0 1]
//   along one axis, [1 2 1] along the other, "reflect" edges.
// Rows are independent: parallel over rows (OpenMP); batch workers run single-threaded.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace qp {

namespace {

inline long long reflect(long long i, long long n) {
  // scipy.ndimage "reflect" (half-sample symmetric: d c b a | a b c d | d c b a), any overhang
  if (i >= 0 && i < n) return i;
  const long long p = 2 * n;
  i %= p;
  if (i < 0) i += p;
  return i < n ? i : p - i - 1;
}

}  // namespace

void detect_blocks_cpu(std::uintptr_t img_, long long H, long long W, std::uintptr_t lut_,
                       int saturation, long long b, long long h, long long w,
                       std::uintptr_t small_, std::uintptr_t sat_) {
  const std::uint8_t* img = reinterpret_cast<const std::uint8_t*>(img_);
  const float* lut = reinterpret_cast<const float*>(lut_);
  float* small = reinterpret_cast<float*>(small_);
  std::uint8_t* sat = reinterpret_cast<std::uint8_t*>(sat_);
  const float inv = 1.0f / static_cast<float>(b * b);
#pragma omp parallel for schedule(static)
  for (long long by = 0; by < h; ++by) {
    std::vector<double> acc(static_cast<size_t>(w * 3), 0.0);
    std::vector<std::uint8_t> s(static_cast<size_t>(w), 0);
    for (long long y = by * b; y < (by + 1) * b; ++y) {
      const std::uint8_t* row = img + y * W * 3;
      for (long long bx = 0; bx < w; ++bx) {
        double a0 = 0, a1 = 0, a2 = 0;
        std::uint8_t any = 0;
        for (long long x = bx * b; x < (bx + 1) * b; ++x) {
          const std::uint8_t* p = row + x * 3;
          a0 += lut[p[0] * 3 + 0];
          a1 += lut[p[1] * 3 + 1];
          a2 += lut[p[2] * 3 + 2];
          any |= static_cast<std::uint8_t>((p[0] >= saturation) | (p[1] >= saturation) |
                                           (p[2] >= saturation));
        }
        acc[bx * 3 + 0] += a0;
        acc[bx * 3 + 1] += a1;
        acc[bx * 3 + 2] += a2;
        s[bx] |= any;
      }
    }
    for (long long bx = 0; bx < w; ++bx) {
      for (int c = 0; c < 3; ++c)
        small[(by * w + bx) * 3 + c] = static_cast<float>(acc[bx * 3 + c]) * inv;
      sat[by * w + bx] = s[bx];
    }
  }
}

namespace {

// The blur's taps of one row, each output summed in the order k[0], k[1], ... (the shifted
// reads of a padded, interleaved row): with the tap count known at compile time the loop
// over outputs vectorises and the sum stays in a register; R = -1 for any other count.
template <int R>
void hrow_n(const float* base, const float* k, int r, long long row, float* t) {
  const int n = R >= 0 ? 2 * R + 1 : 2 * r + 1;
  if constexpr (R >= 0) {
#pragma GCC ivdep
    for (long long j = 0; j < row; ++j) {
      float acc = k[0] * base[j];
      for (int i = 1; i < n; ++i) acc += k[i] * base[j + i * 3];
      t[j] = acc;
    }
  } else {
#pragma GCC ivdep
    for (long long j = 0; j < row; ++j) t[j] = k[0] * base[j];
    for (int i = 1; i < n; ++i) {
      const float ki = k[i];
      const float* sh = base + i * 3;
#pragma GCC ivdep
      for (long long j = 0; j < row; ++j) t[j] += ki * sh[j];
    }
  }
}

void hrow(const float* base, const float* k, int r, long long row, float* t) {
  switch (r) {
    case 1: return hrow_n<1>(base, k, r, row, t);
    case 2: return hrow_n<2>(base, k, r, row, t);
    case 3: return hrow_n<3>(base, k, r, row, t);
    default: return hrow_n<-1>(base, k, r, row, t);
  }
}

// The vertical taps of one output row (blurred source rows src[0..2r], summed from 0 in
// order) divided by the field (bilinear between block rows ra and rb at f), minus 1.
template <int R>
void vrow_divide_n(const float* const* src, const float* k, int r, long long row, const float* ra,
                   const float* rb, float f, float* o, float* v) {
  const int n = R >= 0 ? 2 * R + 1 : 2 * r + 1;
  auto divide = [&](long long x, float acc) {
    float fld = ra[x] + (rb[x] - ra[x]) * f;
    fld = fld > 1e-6f ? fld : 1e-6f;
    o[x] = acc / fld - 1.0f;
  };
  if constexpr (R >= 0) {
#pragma GCC ivdep
    for (long long x = 0; x < row; ++x) {
      float acc = 0.0f;
      for (int i = 0; i < n; ++i) acc += k[i] * src[i][x];
      divide(x, acc);
    }
  } else {
    std::fill(v, v + row, 0.0f);
    for (int i = 0; i < n; ++i) {
      const float ki = k[i];
      const float* s = src[i];
#pragma GCC ivdep
      for (long long x = 0; x < row; ++x) v[x] += ki * s[x];
    }
#pragma GCC ivdep
    for (long long x = 0; x < row; ++x) divide(x, v[x]);
  }
}

void vrow_divide(const float* const* src, const float* k, int r, long long row, const float* ra,
                 const float* rb, float f, float* o, float* v) {
  switch (r) {
    case 1: return vrow_divide_n<1>(src, k, r, row, ra, rb, f, o, v);
    case 2: return vrow_divide_n<2>(src, k, r, row, ra, rb, f, o, v);
    case 3: return vrow_divide_n<3>(src, k, r, row, ra, rb, f, o, v);
    default: return vrow_divide_n<-1>(src, k, r, row, ra, rb, f, o, v);
  }
}

}  // namespace

void detect_contrast_cpu(std::uintptr_t img_, long long H, long long W, std::uintptr_t lut_,
                         std::uintptr_t field_, long long b, long long h, long long w,
                         std::uintptr_t kernel_, int r, std::uintptr_t out_) {
  const std::uint8_t* img = reinterpret_cast<const std::uint8_t*>(img_);
  const float* lut = reinterpret_cast<const float*>(lut_);
  const float* field = reinterpret_cast<const float*>(field_);
  const float* k = reinterpret_cast<const float*>(kernel_);
  float* out = reinterpret_cast<float*>(out_);
  const long long row = W * 3;
  // bilinear coordinates of the field (as the reference: clip((i + 0.5) / b - 0.5, 0, n - 1))
  std::vector<long long> x0(W), x1(W), y0(H), y1(H);
  std::vector<float> fx(W), fy(H);
  for (long long x = 0; x < W; ++x) {
    double xs = std::clamp((x + 0.5) / static_cast<double>(b) - 0.5, 0.0, static_cast<double>(w - 1));
    x0[x] = static_cast<long long>(xs);
    x1[x] = std::min(x0[x] + 1, w - 1);
    fx[x] = static_cast<float>(xs - x0[x]);
  }
  for (long long y = 0; y < H; ++y) {
    double ys = std::clamp((y + 0.5) / static_cast<double>(b) - 0.5, 0.0, static_cast<double>(h - 1));
    y0[y] = static_cast<long long>(ys);
    y1[y] = std::min(y0[y] + 1, h - 1);
    fy[y] = static_cast<float>(ys - y0[y]);
  }
  // the field along x for every block row: rows[by][x][c]
  std::vector<float> rows(static_cast<size_t>(h * row));
#pragma omp parallel for schedule(static)
  for (long long by = 0; by < h; ++by)
    for (long long x = 0; x < W; ++x)
      for (int c = 0; c < 3; ++c) {
        const float a = field[(by * w + x0[x]) * 3 + c], e = field[(by * w + x1[x]) * 3 + c];
        rows[static_cast<size_t>(by * row + x * 3 + c)] = a * (1.0f - fx[x]) + e * fx[x];
      }
  // per thread, a band of output rows; each source row is decoded and blurred along x once
  // into a ring of 2r + 1 rows (it stays in cache), which the vertical blur then reads:
  // ring slot of virtual row v (v in [y0 - r, y1 + r), source row reflect(v)) is v mod n
  const long long n = 2 * r + 1;
#pragma omp parallel
  {
    int nt = 1, id = 0;
#ifdef _OPENMP
    nt = omp_get_num_threads();
    id = omp_get_thread_num();
#endif
    const long long band = (H + nt - 1) / nt;
    const long long ys = std::min(H, id * band), ye = std::min(H, ys + band);
    std::vector<float> pad(static_cast<size_t>((W + 2 * r) * 3));
    std::vector<float> ring(static_cast<size_t>(n * row));
    std::vector<const float*> src(static_cast<size_t>(n));
    std::vector<float> v(static_cast<size_t>(row));
    auto slot = [&](long long vrow) { return ring.data() + (((vrow % n) + n) % n) * row; };
    auto hblur = [&](long long vrow) {
      const std::uint8_t* src = img + reflect(vrow, H) * row;
      float* dec = pad.data() + r * 3;
      for (long long x = 0; x < W; ++x)
        for (int c = 0; c < 3; ++c) dec[x * 3 + c] = lut[src[x * 3 + c] * 3 + c];
      float* t = slot(vrow);
      if (r == 0) {
        std::copy(dec, dec + row, t);
        return;
      }
      // r reflected pixels on each side: every tap is then a plain shifted read
      for (int i = 1; i <= r; ++i)
        for (int c = 0; c < 3; ++c) {
          dec[-i * 3 + c] = dec[reflect(-i, W) * 3 + c];
          dec[(W - 1 + i) * 3 + c] = dec[reflect(W - 1 + i, W) * 3 + c];
        }
      hrow(pad.data(), k, r, row, t);
    };
    if (ys < ye)
      for (long long vr = ys - r; vr < ys + r; ++vr) hblur(vr);
    for (long long y = ys; y < ye; ++y) {
      hblur(y + r);
      const float* ra = rows.data() + y0[y] * row;
      const float* rb = rows.data() + y1[y] * row;
      const float f = fy[y];
      float* o = out + y * row;
      for (int i = -r; i <= r; ++i) src[i + r] = slot(y + i);
      vrow_divide(src.data(), k, r, row, ra, rb, f, o, v.data());
    }
  }
}

void detect_flags_cpu(std::uintptr_t C_, std::uintptr_t img_, long long H, long long W,
                      const double* noise, int saturation, double fg_chi2, double floor_,
                      double bright_level, double edge2, std::uintptr_t out_) {
  const float* C = reinterpret_cast<const float*>(C_);
  const std::uint8_t* img = reinterpret_cast<const std::uint8_t*>(img_);
  std::uint8_t* out = reinterpret_cast<std::uint8_t*>(out_);
  const long long row = W * 3;
  const float in2[3] = {static_cast<float>(1.0 / (noise[0] * noise[0])),
                        static_cast<float>(1.0 / (noise[1] * noise[1])),
                        static_cast<float>(1.0 / (noise[2] * noise[2]))};
  const float g2[3] = {in2[0] / 64.0f, in2[1] / 64.0f, in2[2] / 64.0f};
  const float fg = static_cast<float>(fg_chi2), fl = static_cast<float>(floor_);
  const float br = static_cast<float>(bright_level), e2 = static_cast<float>(edge2);
#pragma omp parallel
  {
    // per row, the per-channel gradient terms over the flattened row (one vectorised pass:
    // the channel factors are spread along the row), then per pixel the sums in channel order
    std::vector<float> fg2(static_cast<size_t>(row));
    for (long long j = 0; j < row; ++j) fg2[j] = g2[j % 3];
    std::vector<float> e_grad(static_cast<size_t>(row));
#pragma omp for schedule(static)
    for (long long y = 0; y < H; ++y) {
      const float* up = C + reflect(y - 1, H) * row;
      const float* mid = C + y * row;
      const float* dn = C + reflect(y + 1, H) * row;
      const std::uint8_t* px = img + y * row;
      std::uint8_t* o = out + y * W;
      auto term = [&](long long j, long long jl, long long jr) {
        // scipy.ndimage.sobel(axis=1): d/dx with [1 2 1] smoothing along y; and along y
        const float gx = (up[jr] - up[jl]) + 2.0f * (mid[jr] - mid[jl]) + (dn[jr] - dn[jl]);
        const float gy = (dn[jl] - up[jl]) + 2.0f * (dn[j] - up[j]) + (dn[jr] - up[jr]);
        e_grad[j] = (gx * gx + gy * gy) * fg2[j];
      };
      for (int c = 0; c < 3; ++c) {  // the edge columns, their neighbours reflected
        term(c, reflect(-1, W) * 3 + c, reflect(1, W) * 3 + c);
        if (W > 1) term((W - 1) * 3 + c, reflect(W - 2, W) * 3 + c, reflect(W, W) * 3 + c);
      }
#pragma GCC ivdep
      for (long long j = 3; j < row - 3; ++j) {
        const float gx = (up[j + 3] - up[j - 3]) + 2.0f * (mid[j + 3] - mid[j - 3]) +
                         (dn[j + 3] - dn[j - 3]);
        const float gy = (dn[j - 3] - up[j - 3]) + 2.0f * (dn[j] - up[j]) + (dn[j + 3] - up[j + 3]);
        e_grad[j] = (gx * gx + gy * gy) * fg2[j];
      }
      // per pixel, branch-free (so it vectorises over the interleaved channels)
#pragma GCC ivdep
      for (long long x = 0; x < W; ++x) {
        const long long xc = x * 3;
        const float m0 = mid[xc], m1 = mid[xc + 1], m2 = mid[xc + 2];
        const float chi = (m0 * m0 * in2[0] + m1 * m1 * in2[1]) + m2 * m2 * in2[2];
        const float mabs = (std::fabs(m0) + std::fabs(m1)) + std::fabs(m2);
        const float grad = (e_grad[xc] + e_grad[xc + 1]) + e_grad[xc + 2];
        const float mx = std::max(std::max(m0, m1), m2);
        const int sat = (px[xc] >= saturation) | (px[xc + 1] >= saturation) |
                        (px[xc + 2] >= saturation);
        const int bright = sat | (mx > br);
        const int cand = (chi > fg) & (bright ^ 1);
        const int core = cand & (grad < e2);
        const int strong = mabs >= 3.0f * fl;
        o[x] = static_cast<std::uint8_t>(cand | (core << 1) | (strong << 2) | (bright << 3));
      }
    }
  }
}

}  // namespace qp

namespace qp {

// Binary opening of one bit of a uint8 [H, W] image with the 3x3 square, as
// scipy.ndimage.binary_opening(structure=ones((3, 3))): an erosion that counts pixels outside
// the image as 0, then a dilation that does too; the result (0/1) goes to out [H, W].
void detect_open3_cpu(std::uintptr_t in_, long long H, long long W, int bit, std::uintptr_t out_) {
  const std::uint8_t* in = reinterpret_cast<const std::uint8_t*>(in_);
  std::uint8_t* out = reinterpret_cast<std::uint8_t*>(out_);
  const std::uint8_t m = static_cast<std::uint8_t>(bit);
  // separable, branch-free passes over byte rows (the compiler vectorises them): a 3-wide
  // AND along x, a 3-high AND along y (erosion; pixels outside count as 0, so the image's
  // border rows and columns erode away), then the same with OR (dilation)
  std::vector<std::uint8_t> hx(static_cast<size_t>(H * W), 0), er(static_cast<size_t>(H * W), 0);
  if (H < 3 || W < 3) {
    std::fill(out, out + H * W, 0);
    return;
  }
#pragma omp parallel for schedule(static)
  for (long long y = 0; y < H; ++y) {
    const std::uint8_t* r = in + y * W;
    std::uint8_t* h = hx.data() + y * W;
#pragma GCC ivdep
    for (long long x = 1; x < W - 1; ++x)
      h[x] = static_cast<std::uint8_t>(((r[x - 1] & r[x] & r[x + 1]) & m) != 0);
  }
#pragma omp parallel for schedule(static)
  for (long long y = 1; y < H - 1; ++y) {
    const std::uint8_t *a = hx.data() + (y - 1) * W, *c = hx.data() + y * W,
                       *d = hx.data() + (y + 1) * W;
    std::uint8_t* e = er.data() + y * W;
#pragma GCC ivdep
    for (long long x = 0; x < W; ++x) e[x] = a[x] & c[x] & d[x];
  }
#pragma omp parallel for schedule(static)
  for (long long y = 0; y < H; ++y) {
    const std::uint8_t* e = er.data() + y * W;
    std::uint8_t* h = hx.data() + y * W;
    h[0] = e[0] | e[1];
    h[W - 1] = e[W - 2] | e[W - 1];
#pragma GCC ivdep
    for (long long x = 1; x < W - 1; ++x) h[x] = e[x - 1] | e[x] | e[x + 1];
  }
#pragma omp parallel for schedule(static)
  for (long long y = 0; y < H; ++y) {
    const std::uint8_t* c = hx.data() + y * W;
    const std::uint8_t* a = y > 0 ? hx.data() + (y - 1) * W : c;
    const std::uint8_t* d = y < H - 1 ? hx.data() + (y + 1) * W : c;
    std::uint8_t* o = out + y * W;
#pragma GCC ivdep
    for (long long x = 0; x < W; ++x) o[x] = a[x] | c[x] | d[x];
  }
}

// 5 x 5 median of an int32 [H, W] map, as scipy.ndimage.median_filter(size=5) with its
// "reflect" edges (d c b a | a b c d): the 13th smallest of the 25 values. A window of one
// value (most of a class map) is that value without a selection. With a mask (uint8 [H, W],
// or 0 for none), pixels outside it are 0 and cost nothing.
void detect_median5_cpu(std::uintptr_t in_, long long H, long long W, std::uintptr_t mask_,
                        std::uintptr_t out_) {
  const std::int32_t* in = reinterpret_cast<const std::int32_t*>(in_);
  const std::uint8_t* mask = reinterpret_cast<const std::uint8_t*>(mask_);
  std::int32_t* out = reinterpret_cast<std::int32_t*>(out_);
  auto reflect = [](long long i, long long n) {
    while (i < 0 || i >= n) i = i < 0 ? -i - 1 : 2 * n - i - 1;
    return i;
  };
  std::vector<long long> ry(static_cast<size_t>(H) * 5), rx(static_cast<size_t>(W) * 5);
  for (long long y = 0; y < H; ++y)
    for (int k = 0; k < 5; ++k) ry[y * 5 + k] = reflect(y + k - 2, H) * W;
  for (long long x = 0; x < W; ++x)
    for (int k = 0; k < 5; ++k) rx[x * 5 + k] = reflect(x + k - 2, W);
  if (H * W == 0) return;
  const auto mm = std::minmax_element(in, in + H * W);
  const std::int32_t lo = *mm.first;
  if (static_cast<long long>(*mm.second) - lo < 256) {
    // few distinct values (a class map): per row, a histogram of the 5 x 5 window slid along
    // x (a column of 5 leaves, one enters), and the 13th smallest read off its counts
    std::vector<int> cnt(static_cast<size_t>(*mm.second - lo) + 1);
    for (long long y = 0; y < H; ++y) {
      std::fill(cnt.begin(), cnt.end(), 0);
      const std::int32_t* rows[5];
      for (int i = 0; i < 5; ++i) rows[i] = in + ry[y * 5 + i];
      auto column = [&](long long xs, int d) {
        for (int i = 0; i < 5; ++i) cnt[static_cast<size_t>(rows[i][xs] - lo)] += d;
      };
      for (int j = 0; j < 5; ++j) column(rx[j], 1);  // the window of x = 0
      for (long long x = 0; x < W; ++x) {
        if (x > 0) {
          column(rx[(x - 1) * 5], -1);
          column(rx[x * 5 + 4], 1);
        }
        if (mask && !mask[y * W + x]) {
          out[y * W + x] = 0;
          continue;
        }
        int below = 0;
        size_t b = 0;
        while (below + cnt[b] < 13) below += cnt[b++];
        out[y * W + x] = static_cast<std::int32_t>(b) + lo;
      }
    }
    return;
  }
  std::int32_t v[25];
  for (long long y = 0; y < H; ++y) {
    for (long long x = 0; x < W; ++x) {
      if (mask && !mask[y * W + x]) {
        out[y * W + x] = 0;
        continue;
      }
      int n = 0;
      bool same = true;
      for (int i = 0; i < 5; ++i) {
        const std::int32_t* row = in + ry[y * 5 + i];
        for (int j = 0; j < 5; ++j) {
          v[n] = row[rx[x * 5 + j]];
          same = same && v[n] == v[0];
          ++n;
        }
      }
      if (!same) std::nth_element(v, v + 12, v + 25);
      out[y * W + x] = same ? v[0] : v[12];
    }
  }
}

// The ladder fit's cost grid: out[t, a, b, c] = sum_p w[p] min(cap, min_l (F0[t, a, p, l] +
// F1[t, b, p, l] + F2[t, c, p, l])) for the per-channel squared residuals F0, F1, F2 [T, G, P, L]
// (channel responses a, b, c of G each, pieces p, rungs l) and the pieces' weights w [P]: the
// numpy expression (F0 + F1 + F2).min(-1) clipped at cap, times w, without its [G, G, G, P, L]
// temporary.
void detect_ladder_cost_cpu(std::uintptr_t f0_, std::uintptr_t f1_, std::uintptr_t f2_,
                            std::uintptr_t w_, long long T, long long G, long long P, long long L,
                            double cap, std::uintptr_t out_) {
  const double* f0 = reinterpret_cast<const double*>(f0_);
  const double* f1 = reinterpret_cast<const double*>(f1_);
  const double* f2 = reinterpret_cast<const double*>(f2_);
  const double* w = reinterpret_cast<const double*>(w_);
  double* out = reinterpret_cast<double*>(out_);
  const long long PL = P * L;
  std::vector<double> ab(static_cast<size_t>(PL));
#pragma omp parallel for collapse(2) schedule(static) firstprivate(ab)
  for (long long t = 0; t < T; ++t) {
    for (long long a = 0; a < G; ++a) {
      const double* A = f0 + (t * G + a) * PL;
      for (long long b = 0; b < G; ++b) {
        const double* B = f1 + (t * G + b) * PL;
        for (long long i = 0; i < PL; ++i) ab[i] = A[i] + B[i];
        for (long long c = 0; c < G; ++c) {
          const double* Cc = f2 + (t * G + c) * PL;
          double acc = 0.0;
          for (long long p = 0; p < P; ++p) {
            const double* x = ab.data() + p * L;
            const double* y = Cc + p * L;
            double m = x[0] + y[0];
            for (long long l = 1; l < L; ++l) m = std::min(m, x[l] + y[l]);
            acc += std::min(m, cap) * w[p];
          }
          out[((t * G + a) * G + b) * G + c] = acc;
        }
      }
    }
  }
}

namespace {
// The order statistics ranks (ascending, distinct, each < v.size()) of finite float32 values
// v into at: for few values nth_element over what is left above the last rank; for many, one
// pass files every value under the top 16 bits of an order-preserving integer key, the
// cumulative counts (from the lowest filled bucket) name the bucket of each rank, and only
// that bucket's values are then ordered. The same values any exact selection gives, in fewer
// passes over many values than nth_element. May reorder v.
void select_ranks(std::vector<float>& v, const std::vector<long long>& ranks,
                  std::vector<float>& at, std::vector<std::uint32_t>& hist,
                  std::vector<float>& bucket) {
  const size_t n = v.size();
  if (n < 2048) {
    auto from = v.begin();
    for (size_t r = 0; r < ranks.size(); ++r) {
      auto it = v.begin() + ranks[r];
      std::nth_element(from, it, v.end());
      at[r] = *it;
      from = it + 1;
    }
    return;
  }
  auto key = [](float f) {
    std::uint32_t b;
    std::memcpy(&b, &f, 4);
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
  };
  hist.assign(65536, 0);
  std::uint32_t lo = 65535;
  for (float f : v) {
    const std::uint32_t h = key(f) >> 16;
    ++hist[h];
    lo = std::min(lo, h);
  }
  size_t below = 0;
  std::uint32_t hb = lo;  // the cumulative counts from the lowest filled bucket on
  size_t r = 0;
  while (r < ranks.size()) {
    while (below + hist[hb] <= static_cast<size_t>(ranks[r])) below += hist[hb++];
    bucket.clear();  // this bucket's values, then every rank that falls in it
    for (float f : v)
      if ((key(f) >> 16) == hb) bucket.push_back(f);
    auto from = bucket.begin();
    for (; r < ranks.size() && static_cast<size_t>(ranks[r]) < below + hist[hb]; ++r) {
      auto it = bucket.begin() + (ranks[r] - static_cast<long long>(below));
      std::nth_element(from, it, bucket.end());
      at[r] = *it;
      from = it + 1;
    }
  }
}

// numpy's median of float32 values (the mean of the two middle ones for an even count, in
// float32); may reorder v
float median_f32(std::vector<float>& v, std::vector<std::uint32_t>& hist,
                 std::vector<float>& bucket) {
  const size_t n = v.size(), k = n / 2;
  std::vector<long long> ranks;
  if (n % 2 == 0) ranks.push_back(static_cast<long long>(k) - 1);
  ranks.push_back(static_cast<long long>(k));
  std::vector<float> at(ranks.size());
  select_ranks(v, ranks, at, hist, bucket);
  return n % 2 ? at[0] : (at[0] + at[1]) / 2.0f;
}
}  // namespace

// The substrate's contrast noise: over every step-th pixel of every step-th row of C
// [H, W, 3] whose image pixel (uint8 [H, W, 3]) has no channel at saturation or above, the
// per-channel median absolute deviation from the median (float32, as numpy's np.median
// computes both). Writes the three deviations to out and returns how many pixels entered.
long long detect_noise_cpu(std::uintptr_t C_, std::uintptr_t img_, long long H, long long W,
                           long long step, int saturation, std::uintptr_t out_) {
  const float* C = reinterpret_cast<const float*>(C_);
  const std::uint8_t* img = reinterpret_cast<const std::uint8_t*>(img_);
  float* out = reinterpret_cast<float*>(out_);
  std::vector<float> ch[3];
  const size_t most = static_cast<size_t>(((H + step - 1) / step) * ((W + step - 1) / step));
  for (auto& v : ch) v.reserve(most);
  for (long long y = 0; y < H; y += step)
    for (long long x = 0; x < W; x += step) {
      const long long i = (y * W + x) * 3;
      if (img[i] >= saturation || img[i + 1] >= saturation || img[i + 2] >= saturation) continue;
      for (int c = 0; c < 3; ++c) ch[c].push_back(C[i + c]);
    }
  const long long n = static_cast<long long>(ch[0].size());
  if (n == 0) return 0;
  std::vector<std::uint32_t> hist;
  std::vector<float> bucket;
  for (int c = 0; c < 3; ++c) {
    std::vector<float>& v = ch[c];
    const float med = median_f32(v, hist, bucket);
    for (float& x : v) x = std::fabs(x - med);
    out[c] = median_f32(v, hist, bucket);
  }
  return n;
}

namespace {

// The values of C [H, W, 3] per channel over the window at (y0, x0), mh x mw, where mask
// (uint8 [mh, mw]) is set, in raster order; returns how many pixels.
long long gather_masked(const float* C, long long W, long long y0, long long x0,
                        const std::uint8_t* mask, long long mh, long long mw,
                        std::vector<float> (&ch)[3]) {
  for (long long y = 0; y < mh; ++y) {
    const float* row = C + ((y0 + y) * W + x0) * 3;
    const std::uint8_t* m = mask + y * mw;
    for (long long x = 0; x < mw; ++x)
      if (m[x])
        for (int c = 0; c < 3; ++c) ch[c].push_back(row[x * 3 + c]);
  }
  return static_cast<long long>(ch[0].size());
}

}  // namespace

// Per channel, numpy's median of C [H, W, 3] (float32) over the pixels of the window at
// (y0, x0) of size mh x mw where mask (uint8 [mh, mw]) is set: out[3], NaN without a pixel.
// Returns how many pixels entered.
long long detect_masked_median_cpu(std::uintptr_t C_, long long W, long long y0, long long x0,
                                   std::uintptr_t mask_, long long mh, long long mw,
                                   std::uintptr_t out_) {
  float* out = reinterpret_cast<float*>(out_);
  std::vector<float> ch[3];
  const long long n = gather_masked(reinterpret_cast<const float*>(C_), W, y0, x0,
                                    reinterpret_cast<const std::uint8_t*>(mask_), mh, mw, ch);
  std::vector<std::uint32_t> hist;
  std::vector<float> bucket;
  for (int c = 0; c < 3; ++c)
    out[c] = n ? median_f32(ch[c], hist, bucket) : std::nanf("");
  return n;
}

// Per label of ids [m] (int64), numpy's median per channel of C [H, W, 3] over the pixels of
// the int32 label image labels [H, W] that carry it: out [m, 3] float32, NaN without a pixel.
// One pass over the image files each pixel's values under its label.
void detect_label_medians_cpu(std::uintptr_t labels_, std::uintptr_t C_, long long H, long long W,
                              std::uintptr_t ids_, long long m, std::uintptr_t out_) {
  const std::int32_t* lab = reinterpret_cast<const std::int32_t*>(labels_);
  const float* C = reinterpret_cast<const float*>(C_);
  const long long* ids = reinterpret_cast<const long long*>(ids_);
  float* out = reinterpret_cast<float*>(out_);
  std::int32_t top = 0;
  for (long long i = 0; i < m; ++i) top = std::max<std::int32_t>(top, static_cast<std::int32_t>(ids[i]));
  std::vector<std::int32_t> slot(static_cast<size_t>(top) + 1, -1);
  for (long long i = 0; i < m; ++i)
    if (ids[i] > 0) slot[static_cast<size_t>(ids[i])] = static_cast<std::int32_t>(i);
  std::vector<std::vector<float>> ch(static_cast<size_t>(m * 3));
  for (long long p = 0; p < H * W; ++p) {
    const std::int32_t l = lab[p];
    if (l <= 0 || l > top) continue;
    const std::int32_t s = slot[static_cast<size_t>(l)];
    if (s < 0) continue;
    for (int c = 0; c < 3; ++c) ch[static_cast<size_t>(s * 3 + c)].push_back(C[p * 3 + c]);
  }
  std::vector<std::uint32_t> hist;
  std::vector<float> bucket;
  for (long long i = 0; i < m * 3; ++i) {
    std::vector<float>& v = ch[static_cast<size_t>(i)];
    out[i] = v.empty() ? std::nanf("") : median_f32(v, hist, bucket);
  }
}

// The functions below without fused multiply-adds, so that they round as numpy and scipy do.
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")

// numpy's percentile ("linear") per channel of the same values: for each fraction q[k], the
// order statistics i = floor((n - 1) q) and i + 1, blended as numpy's lerp blends them (in
// float64, the difference taken in float32). out [nq, 3] float64, NaN without a pixel.
long long detect_masked_quantiles_cpu(std::uintptr_t C_, long long W, long long y0, long long x0,
                                      std::uintptr_t mask_, long long mh, long long mw,
                                      const double* q, int nq, std::uintptr_t out_) {
  double* out = reinterpret_cast<double*>(out_);
  std::vector<float> ch[3];
  const long long n = gather_masked(reinterpret_cast<const float*>(C_), W, y0, x0,
                                    reinterpret_cast<const std::uint8_t*>(mask_), mh, mw, ch);
  // the order statistics every fraction needs (i and i + 1), selected once per channel
  std::vector<long long> ranks;
  std::vector<double> frac(static_cast<size_t>(nq));
  std::vector<long long> lo(static_cast<size_t>(nq)), hi(static_cast<size_t>(nq));
  for (int k = 0; k < nq && n; ++k) {
    const double vi = static_cast<double>(n - 1) * q[k];
    lo[k] = static_cast<long long>(std::floor(vi));
    hi[k] = std::min(lo[k] + 1, n - 1);
    frac[k] = vi - static_cast<double>(lo[k]);
    ranks.push_back(lo[k]);
    ranks.push_back(hi[k]);
  }
  std::sort(ranks.begin(), ranks.end());
  ranks.erase(std::unique(ranks.begin(), ranks.end()), ranks.end());
  std::vector<float> at(ranks.size());
  std::vector<std::uint32_t> hist;
  std::vector<float> bucket;
  for (int c = 0; c < 3; ++c) {
    if (n) select_ranks(ch[c], ranks, at, hist, bucket);
    for (int k = 0; k < nq; ++k) {
      if (!n) {
        out[k * 3 + c] = NAN;
        continue;
      }
      const float a = at[std::lower_bound(ranks.begin(), ranks.end(), lo[k]) - ranks.begin()];
      const float b = at[std::lower_bound(ranks.begin(), ranks.end(), hi[k]) - ranks.begin()];
      const float d = b - a;
      const double t = frac[k];
      out[k * 3 + c] = t < 0.5 ? static_cast<double>(a) + static_cast<double>(d) * t
                               : static_cast<double>(b) - static_cast<double>(d) * (1.0 - t);
    }
  }
  return n;
}

// The terrace class of each pixel of a piece (qupaint.detect.pieces.split_terraces): over
// the window at (y0, x0), mh x mw, of C [H, W, 3] where mask is set, ids[r] of the rung mu[r]
// [R, 3] of least chi-square, sum_c ((C - mu) / sig)^2 with sig^2 = noise^2 + (rel C)^2 (rel C
// squared in float32, the rest in float64, the first rung on a tie), as numpy computes
// rung_chi2 and its argmin; 0 outside the mask.
void detect_terrace_classes_cpu(std::uintptr_t C_, long long W, long long y0, long long x0,
                                std::uintptr_t mask_, long long mh, long long mw, const double* mu,
                                const std::int32_t* ids, long long R, const double* noise,
                                double rel, std::uintptr_t out_) {
  const std::uint8_t* mask = reinterpret_cast<const std::uint8_t*>(mask_);
  std::int32_t* out = reinterpret_cast<std::int32_t*>(out_);
  // the piece's pixels gathered channel by channel, then each rung against all of them side
  // by side (so the loops vectorise; every value is computed as before)
  std::vector<float> ch[3];
  const long long n = gather_masked(reinterpret_cast<const float*>(C_), W, y0, x0, mask, mh, mw, ch);
  const float relf = static_cast<float>(rel);
  std::vector<double> sig(static_cast<size_t>(3 * n)), best(static_cast<size_t>(n));
  std::vector<std::int32_t> arg(static_cast<size_t>(n), 0);
  for (int c = 0; c < 3; ++c) {
    const double n2 = noise[c] * noise[c];
    const float* p = ch[c].data();
    double* sc = sig.data() + c * n;
#pragma GCC ivdep
    for (long long i = 0; i < n; ++i) {
      const float r = relf * p[i];
      sc[i] = std::sqrt(n2 + static_cast<double>(r * r));
    }
  }
  for (long long k = 0; k < R; ++k) {
    const double u0 = mu[k * 3], u1 = mu[k * 3 + 1], u2 = mu[k * 3 + 2];
    const float *p0 = ch[0].data(), *p1 = ch[1].data(), *p2 = ch[2].data();
    const double *s0 = sig.data(), *s1 = s0 + n, *s2 = s1 + n;
#pragma GCC ivdep
    for (long long i = 0; i < n; ++i) {
      const double t0 = (static_cast<double>(p0[i]) - u0) / s0[i];
      const double t1 = (static_cast<double>(p1[i]) - u1) / s1[i];
      const double t2 = (static_cast<double>(p2[i]) - u2) / s2[i];
      const double d2 = (t0 * t0 + t1 * t1) + t2 * t2;
      const bool take = k == 0 || d2 < best[i];  // the first least, as argmin
      best[i] = take ? d2 : best[i];
      arg[i] = take ? static_cast<std::int32_t>(k) : arg[i];
    }
  }
  long long i = 0;
  for (long long o = 0; o < mh * mw; ++o) out[o] = mask[o] ? ids[arg[i++]] : 0;
}

namespace {

// One pass of smooth_nearest along an axis: n lines of length len, element j of line i at
// base(i) + j * step. Each line is read into float64 with r copies of its end values on
// either side ("nearest"), and correlated as scipy's symmetric path does: x[i] w[0], then the
// pairs (x[i - k] + x[i + k]) w[k] added from the outermost in; stored as T.
template <typename T, typename Base>
void smooth_pass(T* a, long long n, long long len, long long step, Base base, const double* wt,
                 int r) {
  std::vector<double> buf(static_cast<size_t>(len + 2 * r)), acc(static_cast<size_t>(len));
  for (long long i = 0; i < n; ++i) {
    T* line = a + base(i);
    for (long long j = 0; j < len; ++j) buf[r + j] = static_cast<double>(line[j * step]);
    for (int k = 0; k < r; ++k) {
      buf[k] = buf[r];
      buf[r + len + k] = buf[r + len - 1];
    }
    // every output's sum in the same order, the outputs side by side (so it vectorises)
    const double* x = buf.data() + r;
    for (long long j = 0; j < len; ++j) acc[j] = x[j] * wt[0];
    for (int k = r; k >= 1; --k) {
      const double wk = wt[k];
#pragma GCC ivdep
      for (long long j = 0; j < len; ++j) acc[j] += (x[j - k] + x[j + k]) * wk;
    }
    for (long long j = 0; j < len; ++j) line[j * step] = static_cast<T>(acc[j]);
  }
}

template <typename T>
void smooth_impl(T* a, long long h, long long w, long long nc, const double* wt, int r) {
  // along axis 0 (the columns of each channel), then axis 1 (the rows)
  smooth_pass(a, w * nc, h, w * nc, [&](long long i) { return i; }, wt, r);
  smooth_pass(a, h * nc, w, nc, [&](long long i) { return (i / nc) * w * nc + i % nc; }, wt, r);
}

}  // namespace

// scipy.ndimage.gaussian_filter(a, (s, s, 0), mode="nearest") of a [h, w, nc] array in place
// (float64 for itemsize 8, float32 for 4; each pass stored in that type, as scipy stores it),
// bit for bit, given scipy's normalised weights wt[0..r] (centre first).
void detect_smooth_cpu(std::uintptr_t a_, int itemsize, long long h, long long w, long long nc,
                       const double* wt, int r) {
  if (itemsize == 8)
    smooth_impl(reinterpret_cast<double*>(a_), h, w, nc, wt, r);
  else
    smooth_impl(reinterpret_cast<float*>(a_), h, w, nc, wt, r);
}
#pragma GCC pop_options

// A piece grown in its window (qupaint.detect.pieces.grow): own (uint8 [h, w], in and out) is
// the piece in the window whose top-left pixel is (y0, x0) of the [H, W] images cand
// (uint8, row length W) and C (float32 [H, W, 3]). With C, it first floods through the
// 4-connected candidate pixels of its colour (|C - med| <= thr in every channel, the
// difference in float32 and compared in float64, as numpy does), what labelling same | own
// and keeping the components that hold a pixel of own gives. Then, for pad > 0, it is
// dilated pad times by the 4-connected cross (outside the window 0) and kept where a
// candidate or its own.
void detect_grow_cpu(std::uintptr_t own_, long long h, long long w, std::uintptr_t cand_,
                     long long W, long long y0, long long x0, std::uintptr_t C_,
                     const double* med, const double* thr, int pad) {
  std::uint8_t* own = reinterpret_cast<std::uint8_t*>(own_);
  const std::uint8_t* cand = reinterpret_cast<const std::uint8_t*>(cand_);
  const float* C = reinterpret_cast<const float*>(C_);
  const long long n = h * w;
  auto cw = [&](long long i) { return cand[(y0 + i / w) * W + x0 + i % w] != 0; };
  if (C) {
    const float m[3] = {static_cast<float>(med[0]), static_cast<float>(med[1]),
                        static_cast<float>(med[2])};
    auto same = [&](long long i) {
      if (!cw(i)) return false;
      const float* p = C + ((y0 + i / w) * W + x0 + i % w) * 3;
      for (int c = 0; c < 3; ++c)
        if (!(static_cast<double>(std::fabs(p[c] - m[c])) <= thr[c])) return false;
      return true;
    };
    std::vector<long long> stack;
    for (long long i = 0; i < n; ++i)
      if (own[i]) stack.push_back(i);
    while (!stack.empty()) {
      const long long i = stack.back();
      stack.pop_back();
      const long long y = i / w, x = i % w;
      const long long nb[4] = {y > 0 ? i - w : -1, y < h - 1 ? i + w : -1, x > 0 ? i - 1 : -1,
                               x < w - 1 ? i + 1 : -1};
      for (long long j : nb)
        if (j >= 0 && !own[j] && same(j)) {
          own[j] = 1;
          stack.push_back(j);
        }
    }
  }
  if (pad <= 0) return;
  std::vector<std::uint8_t> cur(own, own + n), nxt(static_cast<size_t>(n));
  for (int it = 0; it < pad; ++it) {
    for (long long y = 0; y < h; ++y) {
      const std::uint8_t* r = cur.data() + y * w;
      std::uint8_t* o = nxt.data() + y * w;
      for (long long x = 0; x < w; ++x) {
        std::uint8_t v = r[x];
        if (x > 0) v |= r[x - 1];
        if (x < w - 1) v |= r[x + 1];
        if (y > 0) v |= r[x - w];
        if (y < h - 1) v |= r[x + w];
        o[x] = v;
      }
    }
    cur.swap(nxt);
  }
  for (long long i = 0; i < n; ++i)
    own[i] = static_cast<std::uint8_t>(cur[i] && (cw(i) || own[i]));
}

namespace {

std::int32_t find_root(std::vector<std::int32_t>& parent, std::int32_t a) {
  while (parent[a] != a) a = parent[a] = parent[parent[a]];
  return a;
}

template <typename T>
long long label_impl(const T* in, long long H, long long W, bool conn8, std::int32_t* out) {
  // by runs (maximal stretches of one non-zero value along a row): a run joins the runs of
  // the row above with its value that touch it (sharing a column, or a corner when
  // 8-connected), in a union-find whose roots are each set's smallest provisional label.
  // Provisional labels go to runs in raster order, so numbering the roots in order numbers
  // the regions by the raster order of their first pixel, as scipy.ndimage.label does.
  struct Run {
    long long x0, x1;  // [x0, x1)
    std::int32_t label;
  };
  std::vector<Run> runs;
  std::vector<long long> row_start(static_cast<size_t>(H) + 1, 0);
  std::vector<std::int32_t> parent{0};
  const long long reach = conn8 ? 1 : 0;
  for (long long y = 0; y < H; ++y) {
    row_start[static_cast<size_t>(y)] = static_cast<long long>(runs.size());
    const T* r = in + y * W;
    long long p = y > 0 ? row_start[static_cast<size_t>(y - 1)] : 0;
    const long long pe = y > 0 ? row_start[static_cast<size_t>(y)] : 0;
    long long x = 0;
    while (x < W) {
      const T v = r[x];
      const long long x0 = x;
      while (x < W && r[x] == v) ++x;
      if (!v) continue;
      // runs above that end before this one's reach can touch no later run either
      while (p < pe && runs[static_cast<size_t>(p)].x1 + reach <= x0) ++p;
      std::int32_t lab = 0;
      for (long long q = p; q < pe && runs[static_cast<size_t>(q)].x0 < x + reach; ++q) {
        const Run& u = runs[static_cast<size_t>(q)];
        if (in[(y - 1) * W + u.x0] != v) continue;
        const std::int32_t root = find_root(parent, u.label);
        if (!lab) {
          lab = root;
        } else if (root != lab) {
          const std::int32_t lo = std::min(root, lab), hi = std::max(root, lab);
          parent[hi] = lo;
          lab = lo;
        }
      }
      if (!lab) {
        lab = static_cast<std::int32_t>(parent.size());
        parent.push_back(lab);
      }
      runs.push_back({x0, x, lab});
    }
  }
  row_start[static_cast<size_t>(H)] = static_cast<long long>(runs.size());
  std::vector<std::int32_t> number(parent.size(), 0);
  std::int32_t next = 0;
  for (size_t l = 1; l < parent.size(); ++l) {
    const std::int32_t root = find_root(parent, static_cast<std::int32_t>(l));
    number[l] = root == static_cast<std::int32_t>(l) ? ++next : number[root];
  }
  std::fill(out, out + H * W, 0);
  for (long long y = 0; y < H; ++y)
    for (long long i = row_start[static_cast<size_t>(y)]; i < row_start[static_cast<size_t>(y) + 1]; ++i) {
      const Run& u = runs[static_cast<size_t>(i)];
      std::fill(out + y * W + u.x0, out + y * W + u.x1, number[u.label]);
    }
  return next;
}

}  // namespace

// Connected components of the non-zero pixels of an [H, W] image (uint8 for itemsize 1,
// int32 for 4); neighbours join only when their values are equal (a class map's regions).
// 4- or 8-connected. Writes int32 labels 1..n in the order scipy.ndimage.label gives them
// (raster order of each component's first pixel), 0 for zero pixels; returns n.
long long detect_label_cpu(std::uintptr_t in_, int itemsize, long long H, long long W, int conn8,
                           std::uintptr_t out_) {
  std::int32_t* out = reinterpret_cast<std::int32_t*>(out_);
  if (itemsize == 1)
    return label_impl(reinterpret_cast<const std::uint8_t*>(in_), H, W, conn8 != 0, out);
  return label_impl(reinterpret_cast<const std::int32_t*>(in_), H, W, conn8 != 0, out);
}

// How the layer-ladder hypotheses see each piece (qupaint.detect.ladder.hypothesis_votes):
// piece i (contrast M[i], inverse variances a[i], both [p, 3]) sits on hypothesis k's
// nearest rung (least chi-square over mus[k] [L, 3], the first on a tie, as argmin) and fits
// it when that chi-square is <= max_chi2. Per piece: okw, the weight w[k] of the hypotheses
// it fits, thinw of those where the rung is thin (l < T), nok how many it fits, votes [T] the
// weight per thin rung, best [T] the least chi-square to rung l over the hypotheses where it
// is thin (inf where none). Sums run over k in order.
void detect_hypotheses_cpu(const double* M, const double* a, long long p, const double* mus,
                           long long K, long long L, const double* w, double max_chi2, int T,
                           double* okw, double* thinw, long long* nok, double* votes,
                           double* best) {
  // the rungs hypothesis-minor ([L, 3, K]) so that the hypotheses of one piece are taken
  // side by side (the loops over k vectorise); the sums over k then run in order
  std::vector<double> tr(static_cast<size_t>(L * 3 * K));
  for (long long k = 0; k < K; ++k)
    for (long long l = 0; l < L; ++l)
      for (int c = 0; c < 3; ++c) tr[static_cast<size_t>((l * 3 + c) * K + k)] = mus[(k * L + l) * 3 + c];
  const long long TL = std::min<long long>(T, L);
#pragma omp parallel
  {
    std::vector<double> bd(static_cast<size_t>(K)), thin_d(static_cast<size_t>(TL * K));
    std::vector<std::int32_t> lb(static_cast<size_t>(K));
#pragma omp for schedule(static)
    for (long long i = 0; i < p; ++i) {
      const double m0 = M[i * 3], m1 = M[i * 3 + 1], m2 = M[i * 3 + 2];
      const double a0 = a[i * 3], a1 = a[i * 3 + 1], a2 = a[i * 3 + 2];
      for (long long l = 0; l < L; ++l) {
        const double* u0 = tr.data() + (l * 3) * K;
        const double* u1 = u0 + K;
        const double* u2 = u1 + K;
        double* td = l < TL ? thin_d.data() + l * K : nullptr;
#pragma GCC ivdep
        for (long long k = 0; k < K; ++k) {
          const double e0 = m0 - u0[k], e1 = m1 - u1[k], e2 = m2 - u2[k];
          const double d = (a0 * (e0 * e0) + a1 * (e1 * e1)) + a2 * (e2 * e2);
          if (td) td[k] = d;
          // the first least rung, as argmin (NaN never replaces, and is never a fit)
          const bool take = l == 0 || d < bd[k];
          bd[k] = take ? d : bd[k];
          lb[k] = take ? static_cast<std::int32_t>(l) : lb[k];
        }
      }
      double ow = 0.0, tw = 0.0;
      long long n = 0;
      double* v = votes + i * T;
      double* b = best + i * T;
      for (int t = 0; t < T; ++t) {
        v[t] = 0.0;
        b[t] = INFINITY;
      }
      for (long long k = 0; k < K; ++k) {
        if (!(bd[k] <= max_chi2)) continue;
        ow += w[k];
        ++n;
        if (lb[k] >= T) continue;
        tw += w[k];
        v[lb[k]] += w[k];
        for (long long t = 0; t < TL; ++t) b[t] = std::min(b[t], thin_d[static_cast<size_t>(t * K + k)]);
      }
      okw[i] = ow;
      thinw[i] = tw;
      nok[i] = n;
    }
  }
}

// Bounding boxes and areas of the labels 1..n of an int32 [H, W] label image (0 is
// background), as scipy.ndimage.find_objects gives the boxes: box[k - 1] = (y0, y1, x0, x1),
// half-open; a label with no pixel keeps y0 = H, y1 = 0 (area 0).
void detect_boxes_cpu(std::uintptr_t labels_, long long H, long long W, long long n,
                      std::uintptr_t box_, std::uintptr_t area_) {
  const std::int32_t* lab = reinterpret_cast<const std::int32_t*>(labels_);
  long long* box = reinterpret_cast<long long*>(box_);
  long long* area = reinterpret_cast<long long*>(area_);
  for (long long k = 0; k < n; ++k) {
    box[4 * k] = H;
    box[4 * k + 1] = 0;
    box[4 * k + 2] = W;
    box[4 * k + 3] = 0;
    area[k] = 0;
  }
  for (long long y = 0; y < H; ++y) {  // by runs of one label along each row
    const std::int32_t* row = lab + y * W;
    long long x = 0;
    while (x < W) {
      const std::int32_t v = row[x];
      const long long x0 = x;
      while (x < W && row[x] == v) ++x;
      if (v <= 0 || v > n) continue;
      long long* b = box + 4 * (v - 1);
      b[0] = std::min(b[0], y);
      b[1] = std::max(b[1], y + 1);
      b[2] = std::min(b[2], x0);
      b[3] = std::max(b[3], x);
      area[v - 1] += x - x0;
    }
  }
}

}  // namespace qp
