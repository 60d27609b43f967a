// The CPU entry points that bindings.cpp exposes (argument structs in qupaint/args.h).
// All pointers are raw buffers validated by the Python layer; strides are in elements.
#pragma once

#include <cstdint>

#include "qupaint/args.h"

namespace qp {

template <class T> void tmm_reflectance_cpu(const TmmArgs& a);
template <class T> void stack_color_cpu(const TmmArgs& a, const ColorArgs& c, const ColorSpace& cs);
template <class T> void srgb_to_lab_cpu(const PixelArgs& p, const ColorSpace& cs);
template <class T> void lab_to_srgb_cpu(const PixelArgs& p, const ColorSpace& cs, bool clip);

// Physics-Informed Attention map of [B, 3, S, S] images (uint8 or float32, contiguous)
// into out [B, S/p, S/p] float32; medians are mapped by x * scale[c] + shift[c], then
// converted to CIELAB in the colour space cs.
void pia_cpu(std::uintptr_t x, bool is_uint8, long long B, long long S, long long p,
             const double* scale, const double* shift, bool normalize, const ColorSpace& cs,
             std::uintptr_t out);

// Synthia's final step: blur (kernel [2r+1]), sensor noise keyed by (k1, k2), clip, sRGB
// encode through lut [65536]; img float32 [H, W, C] -> out uint8 [H, W, C], contiguous.
void synthia_finish_cpu(std::uintptr_t img, long long H, long long W, long long C,
                        std::uintptr_t kernel, int r, float noise_std, std::uint32_t k1,
                        std::uint32_t k2, std::uintptr_t lut, std::uintptr_t out);

// The detector's per-pixel work (csrc/cpu/detect.cpp): img uint8 [H, W, 3] contiguous,
// lut float32 [256, 3] (the camera's decode), field / small float32 [h, w, 3] with blocks of
// b pixels, kernel float32 [2r+1], C float32 [H, W, 3], sat / flags uint8.
void detect_blocks_cpu(std::uintptr_t img, long long H, long long W, std::uintptr_t lut,
                       int saturation, long long b, long long h, long long w,
                       std::uintptr_t small, std::uintptr_t sat);
void detect_contrast_cpu(std::uintptr_t img, long long H, long long W, std::uintptr_t lut,
                         std::uintptr_t field, long long b, long long h, long long w,
                         std::uintptr_t kernel, int r, std::uintptr_t out);
void detect_flags_cpu(std::uintptr_t C, std::uintptr_t img, long long H, long long W,
                      const double* noise, int saturation, double fg_chi2, double floor_,
                      double bright_level, double edge2, std::uintptr_t out);
void detect_open3_cpu(std::uintptr_t in, long long H, long long W, int bit, std::uintptr_t out);
void detect_median5_cpu(std::uintptr_t in, long long H, long long W, std::uintptr_t mask,
                        std::uintptr_t out);
long long detect_noise_cpu(std::uintptr_t C, std::uintptr_t img, long long H, long long W,
                           long long step, int saturation, std::uintptr_t out);
void detect_boxes_cpu(std::uintptr_t labels, long long H, long long W, long long n,
                      std::uintptr_t box, std::uintptr_t area);
long long detect_label_cpu(std::uintptr_t in, int itemsize, long long H, long long W, int conn8,
                           std::uintptr_t out);
void detect_hypotheses_cpu(const double* M, const double* a, long long p, const double* mus,
                           long long K, long long L, const double* w, double max_chi2, int T,
                           double* okw, double* thinw, long long* nok, double* votes,
                           double* best);
void detect_grow_cpu(std::uintptr_t own, long long h, long long w, std::uintptr_t cand,
                     long long W, long long y0, long long x0, std::uintptr_t C,
                     const double* med, const double* thr, int pad);
long long detect_masked_median_cpu(std::uintptr_t C, long long W, long long y0, long long x0,
                                   std::uintptr_t mask, long long mh, long long mw,
                                   std::uintptr_t out);
long long detect_masked_quantiles_cpu(std::uintptr_t C, long long W, long long y0, long long x0,
                                      std::uintptr_t mask, long long mh, long long mw,
                                      const double* q, int nq, std::uintptr_t out);
void detect_label_medians_cpu(std::uintptr_t labels, std::uintptr_t C, long long H, long long W,
                              std::uintptr_t ids, long long m, std::uintptr_t out);
void detect_smooth_cpu(std::uintptr_t a, int itemsize, long long h, long long w, long long nc,
                       const double* wt, int r);
void detect_terrace_classes_cpu(std::uintptr_t C, long long W, long long y0, long long x0,
                                std::uintptr_t mask, long long mh, long long mw, const double* mu,
                                const std::int32_t* ids, long long R, const double* noise,
                                double rel, std::uintptr_t out);
void detect_ladder_cost_cpu(std::uintptr_t f0, std::uintptr_t f1, std::uintptr_t f2, std::uintptr_t w,
                            long long T, long long G, long long P, long long L, double cap,
                            std::uintptr_t out);

}  // namespace qp
