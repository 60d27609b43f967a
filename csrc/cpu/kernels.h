// Declarations of the CPU and CUDA entry points that bindings.cpp exposes.
// All pointers are raw buffers validated by the Python layer; strides are in elements.
#pragma once

#include <cstdint>

namespace qp {

struct TmmArgs {
  std::uintptr_t n;      // complex [B, L, W], interleaved (re, im)
  long long n_sb, n_sl, n_sw;
  std::uintptr_t d;      // real [B, L], nm
  long long d_sb, d_sl;
  std::uintptr_t sin0;   // real [B]: sin(theta0)
  long long sin0_sb;
  std::uintptr_t wl;     // real [W], nm, contiguous
  long long B, L, W;
  int pol;               // Pol
  std::uintptr_t out;    // real [B, W], contiguous
};

template <class T> void tmm_reflectance_cpu(const TmmArgs& a);

// Fused reflectance -> XYZ (-> linear sRGB or CIELAB) per stack; out [B, 3].
struct ColorArgs {
  std::uintptr_t weights;  // real [W, 3]: CMF x illuminant / sum(ybar x illuminant)
  int space;               // 0 xyz, 1 linear sRGB, 2 CIELAB
  double white[3];         // XYZ of the Lab white
  double minv[9];          // XYZ -> linear sRGB (row-major)
  std::uintptr_t out;      // real [B, 3]
};
enum Space : int { SPACE_XYZ = 0, SPACE_LINEAR_SRGB = 1, SPACE_LAB = 2 };
template <class T> void stack_color_cpu(const TmmArgs& a, const ColorArgs& c);

// Per-pixel colour conversions over n pixels with element strides (pixel, channel).
// in_kind: 0 float of T, 1 uint8 (scaled by 1/255).
template <class T>
void srgb_to_lab_cpu(std::uintptr_t in, int in_kind, long long n, long long si, long long sc,
                     const double* white, std::uintptr_t out);
template <class T>
void lab_to_srgb_cpu(std::uintptr_t in, long long n, long long si, long long sc, const double* white,
                     const double* minv, bool clip, std::uintptr_t out);
// Physics-Informed Attention map of [B, 3, S, S] images (uint8 or float32, contiguous)
// into out [B, S/p, S/p] float32; medians are mapped by x * scale[c] + shift[c].
void pia_cpu(std::uintptr_t x, bool is_uint8, long long B, long long S, long long p,
             const double* scale, const double* shift, bool normalize, std::uintptr_t out);

// Synthia's final step: blur (kernel [2r+1]), sensor noise keyed by (k1, k2), clip, sRGB
// encode through lut [65536]; img float32 [H, W, C] -> out uint8 [H, W, C], contiguous.
void synthia_finish_cpu(std::uintptr_t img, long long H, long long W, long long C,
                        std::uintptr_t kernel, int r, float noise_std, std::uint32_t k1,
                        std::uint32_t k2, std::uintptr_t lut, std::uintptr_t out);

#ifdef QUPAINT_WITH_CUDA
template <class T> void tmm_reflectance_cuda(const TmmArgs& a, std::uintptr_t stream);
template <class T> void stack_color_cuda(const TmmArgs& a, const ColorArgs& c, std::uintptr_t stream);
template <class T>
void srgb_to_lab_cuda(std::uintptr_t in, int in_kind, long long n, long long si, long long sc,
                      const double* white, std::uintptr_t out, std::uintptr_t stream);
template <class T>
void lab_to_srgb_cuda(std::uintptr_t in, long long n, long long si, long long sc, const double* white,
                      const double* minv, bool clip, std::uintptr_t out, std::uintptr_t stream);
#endif

}  // namespace qp
