// qupaint._C: one pybind11 module over raw buffers (no torch headers).
// The Python layer validates and converts inputs, then passes data pointers and
// element strides; every entry point releases the GIL while it runs.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>

#include <string>

#include "cpu/kernels.h"
#include "qupaint/fastmath.h"

#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef QUPAINT_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace py = pybind11;
using qp::TmmArgs;

namespace {

int cuda_device_count() {
#ifdef QUPAINT_WITH_CUDA
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return count;
#else
  return 0;
#endif
}

TmmArgs tmm_args(std::uintptr_t n, long long n_sb, long long n_sl, long long n_sw, std::uintptr_t d,
                 long long d_sb, long long d_sl, std::uintptr_t sin0, long long sin0_sb,
                 std::uintptr_t wl, long long B, long long L, long long W, int pol,
                 std::uintptr_t out) {
  return TmmArgs{n, n_sb, n_sl, n_sw, d, d_sb, d_sl, sin0, sin0_sb, wl, B, L, W, pol, out};
}

using Vec3 = std::array<double, 3>;
using Mat3 = std::array<double, 9>;

qp::ColorArgs color_args(std::uintptr_t weights, int space, const Vec3& white, const Mat3& minv,
                         std::uintptr_t out) {
  qp::ColorArgs c{weights, space, {}, {}, out};
  for (int i = 0; i < 3; ++i) c.white[i] = white[i];
  for (int i = 0; i < 9; ++i) c.minv[i] = minv[i];
  return c;
}

// Elementwise qupaint/fastmath.h functions, for the accuracy tests (tests/test_fastmath.py):
// fn 0 cis -> out [n, 2] (cos, sin); 1 exp; 2 log; 3 cbrt -> out [n].
template <class T>
void fastmath_eval(int fn, const T* x, long long n, T* out) {
  for (long long i = 0; i < n; ++i) {
    if (fn == 0) {
      const qp::cplx<T> e = qp::fm::cis<T>(x[i]);
      out[2 * i] = e.re;
      out[2 * i + 1] = e.im;
    } else if (fn == 1) {
      out[i] = qp::fm::exp<T>(x[i]);
    } else if (fn == 2) {
      out[i] = qp::fm::log(x[i]);
    } else {
      out[i] = qp::fm::cbrt<T>(x[i]);
    }
  }
}

// dtype dispatch: "float32" -> float, anything else -> double
template <class F32, class F64>
void by_dtype(const std::string& dtype, F32 f32, F64 f64) {
  if (dtype == "float32") f32();
  else f64();
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "qupaint compiled kernels (CPU C++ and, when built, CUDA)";
  m.attr("__version__") = QUPAINT_VERSION;
  m.def("has_cuda", [] {
#ifdef QUPAINT_WITH_CUDA
    return true;
#else
    return false;
#endif
  }, "True when the CUDA kernels were compiled into this build.");
  m.def("cuda_device_count", &cuda_device_count, "Number of CUDA devices the runtime sees (0 without a driver).");
  m.def("has_openmp", [] {
#ifdef _OPENMP
    return true;
#else
    return false;
#endif
  });
  m.def("set_num_threads", [](int n) {
#ifdef _OPENMP
    omp_set_num_threads(n > 0 ? n : 1);
#else
    (void)n;
#endif
  }, "Threads used by the OpenMP CPU kernels (e.g. 1 inside each worker process).");
  m.def("max_threads", [] {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
  });

  m.def(
      "tmm_reflectance_cpu",
      [](const std::string& dtype, std::uintptr_t n, long long n_sb, long long n_sl, long long n_sw,
         std::uintptr_t d, long long d_sb, long long d_sl, std::uintptr_t sin0, long long sin0_sb,
         std::uintptr_t wl, long long B, long long L, long long W, int pol, std::uintptr_t out) {
        const TmmArgs a = tmm_args(n, n_sb, n_sl, n_sw, d, d_sb, d_sl, sin0, sin0_sb, wl, B, L, W, pol, out);
        py::gil_scoped_release release;
        if (dtype == "float32") qp::tmm_reflectance_cpu<float>(a);
        else qp::tmm_reflectance_cpu<double>(a);
      });
  m.def(
      "stack_color_cpu",
      [](const std::string& dtype, std::uintptr_t n, long long n_sb, long long n_sl, long long n_sw,
         std::uintptr_t d, long long d_sb, long long d_sl, std::uintptr_t sin0, long long sin0_sb,
         std::uintptr_t wl, long long B, long long L, long long W, int pol, std::uintptr_t weights,
         int space, const Vec3& white, const Mat3& minv, std::uintptr_t out) {
        const TmmArgs a = tmm_args(n, n_sb, n_sl, n_sw, d, d_sb, d_sl, sin0, sin0_sb, wl, B, L, W, pol, 0);
        const qp::ColorArgs c = color_args(weights, space, white, minv, out);
        py::gil_scoped_release release;
        by_dtype(dtype, [&] { qp::stack_color_cpu<float>(a, c); }, [&] { qp::stack_color_cpu<double>(a, c); });
      });
  m.def(
      "srgb_to_lab_cpu",
      [](const std::string& dtype, std::uintptr_t in, int in_kind, long long n, long long si, long long sc,
         const Vec3& white, std::uintptr_t out) {
        py::gil_scoped_release release;
        by_dtype(dtype, [&] { qp::srgb_to_lab_cpu<float>(in, in_kind, n, si, sc, white.data(), out); },
                 [&] { qp::srgb_to_lab_cpu<double>(in, in_kind, n, si, sc, white.data(), out); });
      });
  m.def(
      "lab_to_srgb_cpu",
      [](const std::string& dtype, std::uintptr_t in, long long n, long long si, long long sc,
         const Vec3& white, const Mat3& minv, bool clip, std::uintptr_t out) {
        py::gil_scoped_release release;
        by_dtype(dtype, [&] { qp::lab_to_srgb_cpu<float>(in, n, si, sc, white.data(), minv.data(), clip, out); },
                 [&] { qp::lab_to_srgb_cpu<double>(in, n, si, sc, white.data(), minv.data(), clip, out); });
      });
  m.def(
      "_fastmath",
      [](const std::string& dtype, int fn, std::uintptr_t x, long long n, std::uintptr_t out) {
        py::gil_scoped_release release;
        by_dtype(dtype,
                 [&] { fastmath_eval(fn, reinterpret_cast<const float*>(x), n, reinterpret_cast<float*>(out)); },
                 [&] { fastmath_eval(fn, reinterpret_cast<const double*>(x), n, reinterpret_cast<double*>(out)); });
      },
      "Test hook: elementwise fastmath cis (0), exp (1), log (2), cbrt (3) over n contiguous values.");
  m.def(
      "synthia_finish_cpu",
      [](std::uintptr_t img, long long H, long long W, long long C, std::uintptr_t kernel, int r,
         float noise_std, std::uint32_t k1, std::uint32_t k2, std::uintptr_t lut, std::uintptr_t out) {
        py::gil_scoped_release release;
        qp::synthia_finish_cpu(img, H, W, C, kernel, r, noise_std, k1, k2, lut, out);
      });
  m.def(
      "pia_cpu",
      [](std::uintptr_t x, bool is_uint8, long long B, long long S, long long p, const Vec3& scale,
         const Vec3& shift, bool normalize, std::uintptr_t out) {
        py::gil_scoped_release release;
        qp::pia_cpu(x, is_uint8, B, S, p, scale.data(), shift.data(), normalize, out);
      });
#ifdef QUPAINT_WITH_CUDA
  m.def(
      "stack_color_cuda",
      [](const std::string& dtype, std::uintptr_t n, long long n_sb, long long n_sl, long long n_sw,
         std::uintptr_t d, long long d_sb, long long d_sl, std::uintptr_t sin0, long long sin0_sb,
         std::uintptr_t wl, long long B, long long L, long long W, int pol, std::uintptr_t weights,
         int space, const Vec3& white, const Mat3& minv, std::uintptr_t out, std::uintptr_t stream) {
        const TmmArgs a = tmm_args(n, n_sb, n_sl, n_sw, d, d_sb, d_sl, sin0, sin0_sb, wl, B, L, W, pol, 0);
        const qp::ColorArgs c = color_args(weights, space, white, minv, out);
        py::gil_scoped_release release;
        by_dtype(dtype, [&] { qp::stack_color_cuda<float>(a, c, stream); },
                 [&] { qp::stack_color_cuda<double>(a, c, stream); });
      });
  m.def(
      "srgb_to_lab_cuda",
      [](const std::string& dtype, std::uintptr_t in, int in_kind, long long n, long long si, long long sc,
         const Vec3& white, std::uintptr_t out, std::uintptr_t stream) {
        py::gil_scoped_release release;
        by_dtype(dtype, [&] { qp::srgb_to_lab_cuda<float>(in, in_kind, n, si, sc, white.data(), out, stream); },
                 [&] { qp::srgb_to_lab_cuda<double>(in, in_kind, n, si, sc, white.data(), out, stream); });
      });
  m.def(
      "lab_to_srgb_cuda",
      [](const std::string& dtype, std::uintptr_t in, long long n, long long si, long long sc,
         const Vec3& white, const Mat3& minv, bool clip, std::uintptr_t out, std::uintptr_t stream) {
        py::gil_scoped_release release;
        by_dtype(dtype,
                 [&] { qp::lab_to_srgb_cuda<float>(in, n, si, sc, white.data(), minv.data(), clip, out, stream); },
                 [&] { qp::lab_to_srgb_cuda<double>(in, n, si, sc, white.data(), minv.data(), clip, out, stream); });
      });
  m.def(
      "tmm_reflectance_cuda",
      [](const std::string& dtype, std::uintptr_t n, long long n_sb, long long n_sl, long long n_sw,
         std::uintptr_t d, long long d_sb, long long d_sl, std::uintptr_t sin0, long long sin0_sb,
         std::uintptr_t wl, long long B, long long L, long long W, int pol, std::uintptr_t out,
         std::uintptr_t stream) {
        const TmmArgs a = tmm_args(n, n_sb, n_sl, n_sw, d, d_sb, d_sl, sin0, sin0_sb, wl, B, L, W, pol, out);
        py::gil_scoped_release release;
        if (dtype == "float32") qp::tmm_reflectance_cuda<float>(a, stream);
        else qp::tmm_reflectance_cuda<double>(a, stream);
      });
#endif
}
