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
#include <vector>

#include "kernels.h"

namespace qp {

namespace {

inline long long reflect(long long i, long long n) {
  // scipy.ndimage "reflect" (half-sample symmetric), for |overhang| < n
  if (i < 0) return -i - 1;
  if (i >= n) return 2 * n - i - 1;
  return i;
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
  // horizontal blur of the decoded rows into T, then vertical blur and the ratio
  thread_local std::vector<float> T;
  if (T.size() < static_cast<size_t>(H * row)) T.resize(static_cast<size_t>(H * row));
  float* const tb = T.data();
#pragma omp parallel
  {
    std::vector<float> dec(static_cast<size_t>(row));
#pragma omp for schedule(static)
    for (long long y = 0; y < H; ++y) {
      const std::uint8_t* src = img + y * row;
      for (long long x = 0; x < W; ++x)
        for (int c = 0; c < 3; ++c) dec[x * 3 + c] = lut[src[x * 3 + c] * 3 + c];
      float* t = tb + y * row;
      if (r == 0) {
        std::copy(dec.begin(), dec.end(), t);
        continue;
      }
      for (long long x = 0; x < W; ++x) {
        float a0 = 0, a1 = 0, a2 = 0;
        for (int i = -r; i <= r; ++i) {
          const long long xx = reflect(x + i, W);
          const float ki = k[i + r];
          a0 += ki * dec[xx * 3 + 0];
          a1 += ki * dec[xx * 3 + 1];
          a2 += ki * dec[xx * 3 + 2];
        }
        t[x * 3 + 0] = a0;
        t[x * 3 + 1] = a1;
        t[x * 3 + 2] = a2;
      }
    }
    std::vector<float> v(static_cast<size_t>(row));
#pragma omp for schedule(static)
    for (long long y = 0; y < H; ++y) {
      if (r == 0) {
        std::copy(tb + y * row, tb + (y + 1) * row, v.begin());
      } else {
        std::fill(v.begin(), v.end(), 0.0f);
        for (int i = -r; i <= r; ++i) {
          const float ki = k[i + r];
          const float* s = tb + reflect(y + i, H) * row;
#pragma GCC ivdep
          for (long long x = 0; x < row; ++x) v[x] += ki * s[x];
        }
      }
      const float* ra = rows.data() + y0[y] * row;
      const float* rb = rows.data() + y1[y] * row;
      const float f = fy[y];
      float* o = out + y * row;
#pragma GCC ivdep
      for (long long x = 0; x < row; ++x) {
        float fld = ra[x] + (rb[x] - ra[x]) * f;
        fld = fld > 1e-6f ? fld : 1e-6f;
        o[x] = v[x] / fld - 1.0f;
      }
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
#pragma omp parallel for schedule(static)
  for (long long y = 0; y < H; ++y) {
    const float* up = C + reflect(y - 1, H) * row;
    const float* mid = C + y * row;
    const float* dn = C + reflect(y + 1, H) * row;
    const std::uint8_t* px = img + y * row;
    std::uint8_t* o = out + y * W;
    for (long long x = 0; x < W; ++x) {
      const long long xl = reflect(x - 1, W) * 3, xr = reflect(x + 1, W) * 3, xc = x * 3;
      float chi = 0, mabs = 0, mx = -1e30f, grad = 0;
      for (int c = 0; c < 3; ++c) {
        const float v = mid[xc + c];
        chi += v * v * in2[c];
        mabs += std::fabs(v);
        mx = v > mx ? v : mx;
        // scipy.ndimage.sobel(axis=1): d/dx with [1 2 1] smoothing along y
        const float gx = (up[xr + c] - up[xl + c]) + 2.0f * (mid[xr + c] - mid[xl + c]) +
                         (dn[xr + c] - dn[xl + c]);
        const float gy = (dn[xl + c] - up[xl + c]) + 2.0f * (dn[xc + c] - up[xc + c]) +
                         (dn[xr + c] - up[xr + c]);
        grad += (gx * gx + gy * gy) * g2[c];
      }
      const bool sat = px[xc] >= saturation || px[xc + 1] >= saturation || px[xc + 2] >= saturation;
      const bool bright = sat || mx > br;
      const bool cand = chi > fg && !bright;
      const bool core = cand && grad < e2;
      const bool strong = mabs >= 3.0f * fl;
      o[x] = static_cast<std::uint8_t>(cand | (core << 1) | (strong << 2) | (bright << 3));
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
  std::vector<std::uint8_t> er(static_cast<size_t>(H * W), 0);
  // erosion: separable (min over 3 along x, then along y); the border rows/columns are 0
#pragma omp parallel for schedule(static)
  for (long long y = 1; y < H - 1; ++y) {
    for (long long x = 1; x < W - 1; ++x) {
      bool all = true;
      for (int dy = -1; dy <= 1 && all; ++dy) {
        const std::uint8_t* r = in + (y + dy) * W;
        all = (r[x - 1] & m) && (r[x] & m) && (r[x + 1] & m);
      }
      er[static_cast<size_t>(y * W + x)] = all ? 1 : 0;
    }
  }
  // dilation of the eroded set (outside the image counts as 0)
#pragma omp parallel for schedule(static)
  for (long long y = 0; y < H; ++y) {
    for (long long x = 0; x < W; ++x) {
      std::uint8_t any = 0;
      for (long long yy = std::max(0LL, y - 1); yy <= std::min(H - 1, y + 1) && !any; ++yy) {
        const std::uint8_t* r = er.data() + yy * W;
        for (long long xx = std::max(0LL, x - 1); xx <= std::min(W - 1, x + 1); ++xx) any |= r[xx];
      }
      out[y * W + x] = any;
    }
  }
}

}  // namespace qp
