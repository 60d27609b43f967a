// The CUDA entry points that bindings.cpp exposes (argument structs in qupaint/args.h).
// Each runs asynchronously on the given cudaStream_t (passed as an integer).
#pragma once

#include <cstdint>

#include "qupaint/args.h"

namespace qp {

template <class T> void tmm_reflectance_cuda(const TmmArgs& a, std::uintptr_t stream);
template <class T>
void stack_color_cuda(const TmmArgs& a, const ColorArgs& c, const ColorSpace& cs,
                      std::uintptr_t stream);
// the same two on the top fold (only layer 1 varies; see qupaint/args.h TopArgs)
template <class T> void tmm_top_cuda(const TopArgs& a, std::uintptr_t stream);
template <class T>
void stack_color_top_cuda(const TopArgs& a, const ColorArgs& c, const ColorSpace& cs,
                          std::uintptr_t stream);
template <class T> void srgb_to_lab_cuda(const PixelArgs& p, const ColorSpace& cs, std::uintptr_t stream);
template <class T>
void lab_to_srgb_cuda(const PixelArgs& p, const ColorSpace& cs, bool clip, std::uintptr_t stream);

}  // namespace qp
