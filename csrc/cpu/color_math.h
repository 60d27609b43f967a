// CPU math policy for qupaint/color.h: vectorisable pow and cbrt (qupaint/fastmath.h).
#pragma once

#include "qupaint/color.h"
#include "qupaint/fastmath.h"

namespace qp {

struct FastMath {
  template <class T> static inline T pow(T x, T y) { return fm::pow<T>(x, y); }
  template <class T> static inline T cbrt(T x) { return fm::cbrt<T>(x); }
};

}  // namespace qp
