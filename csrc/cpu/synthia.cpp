// Synthia's last rendering step on the CPU, fused: separable Gaussian blur (edges
// replicated), additive Gaussian sensor noise from a counter-based generator, clip to
// [0, 1], and sRGB encoding to uint8 through a 65536-entry table. The numpy reference is
// qupaint.synthia.finish.finish_reference; both draw the same noise:
//
//   pair j of the flat [H, W, C] image (elements 2j, 2j+1), keys k1, k2 from (seed, index):
//     a = h(h(2j ^ k1) ^ k2), b = h(h((2j + 1) ^ k1) ^ k2)      (h = "lowbias32", below)
//     u1 = ((a >> 8) + 0.5) / 2^24 in (0, 1),  u2 = (b >> 8) / 2^24 in [0, 1)
//     Box-Muller: (z0, z1) = sqrt(-2 ln u1) (cos 2 pi u2, sin 2 pi u2)
//
// h is the 32-bit integer hash "lowbias32" (C. Wellons, hash-prospector, public domain):
// x ^= x >> 16; x *= 0x7feb352d; x ^= x >> 15; x *= 0x846ca68b; x ^= x >> 16.
// Everything is 32-bit integer or float arithmetic, so the loops vectorise (AVX2 has
// 32-bit vector multiplies; fastmath.h's log and sincos).
// Parallel over rows (OpenMP); Synthia's worker processes run it single-threaded.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels.h"
#include "qupaint/fastmath.h"

namespace qp {

namespace {

inline std::uint32_t lowbias32(std::uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

// Noise of pairs [j0, j1) into z[0 .. 2 (j1 - j0)).
void noise_pairs(long long j0, long long j1, std::uint32_t k1, std::uint32_t k2, float* z) {
  const float two_pi = 6.283185307179586f;
  const long long n = j1 - j0;
#pragma GCC ivdep
  for (long long i = 0; i < n; ++i) {
    const std::uint32_t e = static_cast<std::uint32_t>(2 * (j0 + i));
    const std::uint32_t a = lowbias32(lowbias32(e ^ k1) ^ k2);
    const std::uint32_t b = lowbias32(lowbias32((e + 1U) ^ k1) ^ k2);
    const float u1 = (static_cast<float>(static_cast<std::int32_t>(a >> 8)) + 0.5f) * (1.0f / 16777216.0f);
    const float u2 = static_cast<float>(static_cast<std::int32_t>(b >> 8)) * (1.0f / 16777216.0f);
    const float r = std::sqrt(-2.0f * fm::log(u1));
    const cplx<float> c = fm::cis<float>(two_pi * u2);
    z[2 * i] = r * c.re;
    z[2 * i + 1] = r * c.im;
  }
}

// [0, 1]-clipped value -> 16-bit table index; NaN fails both tests and maps to 0.
inline std::int32_t quantise(float v) {
  v = v > 0.0f ? v : 0.0f;
  v = v < 1.0f ? v : 1.0f;
  return static_cast<std::int32_t>(v * 65535.0f + 0.5f);
}

}  // namespace

void synthia_finish_cpu(std::uintptr_t img_, long long H, long long W, long long C,
                        std::uintptr_t kernel_, int r, float noise_std, std::uint32_t k1,
                        std::uint32_t k2, std::uintptr_t lut_, std::uintptr_t out_) {
  const float* img = reinterpret_cast<const float*>(img_);
  const float* k = reinterpret_cast<const float*>(kernel_);
  const std::uint8_t* lut = reinterpret_cast<const std::uint8_t*>(lut_);
  std::uint8_t* out = reinterpret_cast<std::uint8_t*>(out_);
  const long long row = W * C;
  // vertical pass into V (skipped without blur). V is kept per calling thread between calls:
  // a fresh 3 MB buffer per image cost more in page faults than the blur itself.
  thread_local std::vector<float> V;
  if (r > 0 && V.size() < static_cast<size_t>(H * row)) V.resize(static_cast<size_t>(H * row));
  float* const vbuf = V.data();  // the caller's buffer (OpenMP threads have their own V)
  if (r > 0) {
#pragma omp parallel for schedule(static)
    for (long long y = 0; y < H; ++y) {
      float* v = vbuf + y * row;
      const float* s0 = img + std::clamp<long long>(y - r, 0, H - 1) * row;
#pragma GCC ivdep
      for (long long x = 0; x < row; ++x) v[x] = k[0] * s0[x];
      for (int i = 1; i <= 2 * r; ++i) {
        const float ki = k[i];
        const float* s = img + std::clamp<long long>(y + i - r, 0, H - 1) * row;
#pragma GCC ivdep
        for (long long x = 0; x < row; ++x) v[x] += ki * s[x];
      }
    }
  }
#pragma omp parallel
  {
    std::vector<float> pad(static_cast<size_t>((W + 2 * r) * C));
    std::vector<float> h(static_cast<size_t>(row));
    std::vector<float> z(static_cast<size_t>(row + 2));
    std::vector<std::int32_t> qbuf(static_cast<size_t>(row));
#pragma omp for schedule(static)
    for (long long y = 0; y < H; ++y) {
      const float* src = r > 0 ? vbuf + y * row : img + y * row;
      const float* vals = src;
      if (r > 0) {  // horizontal pass on an edge-replicated copy of the row
        for (int i = 0; i < r; ++i)
          for (long long c = 0; c < C; ++c) {
            pad[static_cast<size_t>(i * C + c)] = src[c];
            pad[static_cast<size_t>((W + r + i) * C + c)] = src[(W - 1) * C + c];
          }
        std::copy(src, src + row, pad.begin() + r * C);
        const float* p = pad.data();
        float* hp = h.data();
#pragma GCC ivdep
        for (long long x = 0; x < row; ++x) hp[x] = k[0] * p[x];
        for (int i = 1; i <= 2 * r; ++i) {
          const float ki = k[i];
          const float* pi = p + i * C;
#pragma GCC ivdep
          for (long long x = 0; x < row; ++x) hp[x] += ki * pi[x];
        }
        vals = hp;
      }
      const long long base = y * row;
      const float* zn = nullptr;
      if (noise_std != 0.0f) {
        const long long j0 = base >> 1, j1 = (base + row + 1) >> 1;
        noise_pairs(j0, j1, k1, k2, z.data());
        zn = z.data() + (base & 1);
      }
      // quantise (vectorised; NaN -> 0, so the table index is always in range), then look up
      std::int32_t* q = qbuf.data();
      if (zn) {
#pragma GCC ivdep
        for (long long x = 0; x < row; ++x) q[x] = quantise(vals[x] + noise_std * zn[x]);
      } else {
#pragma GCC ivdep
        for (long long x = 0; x < row; ++x) q[x] = quantise(vals[x]);
      }
      std::uint8_t* o = out + base;
      for (long long x = 0; x < row; ++x) o[x] = lut[q[x]];
    }
  }
}

}  // namespace qp
